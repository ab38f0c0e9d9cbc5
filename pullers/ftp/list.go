package ftp

import (
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/pool"
)

// ListEntry is one parsed line of a directory listing. Every field comes
// from the server and is untrusted: Name is checked by the walk, not here.
type ListEntry struct {
	Name    string
	Type    pool.EntryType
	Size    int64
	ModTime time.Time
	// Precise is true when ModTime has second precision (MLSD "modify");
	// LIST times have minutes or days only.
	Precise bool
	Mode    fs.FileMode // permission bits; only when HasMode
	HasMode bool
	User    string
	Group   string
	UID     uint32
	GID     uint32
	HasUID  bool
	HasGID  bool
	Target  string // symlink target, verbatim
	Rdev    uint64 // device number (Linux encoding) when the listing gives it
}

// errSkip marks a listing line that is not an entry ("total 12", the
// "." and ".." of MLSD's cdir/pdir).
var errSkip = errors.New("not an entry")

// maxLineLen caps one listing line; longer lines are refused.
const maxLineLen = 8 << 10

// ParseListLine parses one line of a LIST reply: Unix "ls -l" style
// (with or without the link count and group, with device numbers, with
// "name -> target" for symlinks) or Windows/IIS style
// ("01-16-24  02:15PM  <DIR>  name"). Times without a year are placed in
// the last year not after now+1 day; all times are taken as UTC (LIST does
// not say the server's zone). It returns errSkip for "total N" lines.
func ParseListLine(line string, now time.Time) (ListEntry, error) {
	line = strings.TrimRight(line, "\r\n")
	if len(line) > maxLineLen {
		return ListEntry{}, errors.New("listing line too long")
	}
	if strings.TrimSpace(line) == "" {
		return ListEntry{}, errSkip
	}
	if strings.HasPrefix(line, "total ") {
		if _, err := strconv.ParseUint(strings.TrimSpace(line[6:]), 10, 64); err == nil {
			return ListEntry{}, errSkip
		}
	}
	if c := line[0]; c >= '0' && c <= '9' {
		return parseWindows(line)
	}
	return parseUnix(line, now)
}

// field is a whitespace-separated token and where it ends in the line.
type field struct {
	s   string
	end int
}

// fields splits at runs of spaces/tabs, up to max tokens.
func fields(line string, max int) []field {
	var out []field
	i := 0
	for i < len(line) && len(out) < max {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) {
			break
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\t' {
			j++
		}
		out = append(out, field{line[i:j], j})
		i = j
	}
	return out
}

var months = map[string]time.Month{
	"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
	"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}

func parseUnix(line string, now time.Time) (ListEntry, error) {
	var e ListEntry
	if len(line) < 10 {
		return e, errors.New("unix listing: line too short")
	}
	perm := line[:10]
	switch perm[0] {
	case '-':
		e.Type = pool.TypeFile
	case 'd':
		e.Type = pool.TypeDir
	case 'l':
		e.Type = pool.TypeSymlink
	case 'c':
		e.Type = pool.TypeCharDev
	case 'b':
		e.Type = pool.TypeBlockDev
	case 'p':
		e.Type = pool.TypeFIFO
	case 's':
		e.Type = pool.TypeSocket
	default:
		return e, errors.New("unix listing: unknown file type")
	}
	mode, ok := parsePerm(perm[1:])
	if !ok {
		return e, errors.New("unix listing: bad permission string")
	}
	e.Mode, e.HasMode = mode, true
	fs := fields(line, 12)
	// Find the date: month, day, time-or-year, with the size (or
	// "major, minor") just before it.
	di := -1
	for i := 2; i+2 < len(fs); i++ {
		if _, ok := months[strings.ToLower(fs[i].s)]; !ok {
			continue
		}
		if d, err := strconv.Atoi(fs[i+1].s); err != nil || d < 1 || d > 31 {
			continue
		}
		if !isNumber(strings.TrimSuffix(fs[i-1].s, ",")) {
			continue
		}
		di = i
		break
	}
	if di < 0 {
		return e, errors.New("unix listing: no date")
	}
	t, err := unixTime(fs[di].s, fs[di+1].s, fs[di+2].s, now)
	if err != nil {
		return e, err
	}
	e.ModTime = t
	// The name is what follows the date, after one separator.
	rest := line[fs[di+2].end:]
	if len(rest) < 2 {
		return e, errors.New("unix listing: no name")
	}
	name := rest[1:]
	// What precedes the date: [links] owner [group] size | major, minor.
	pre := fs[1:di]
	if e.Type == pool.TypeCharDev || e.Type == pool.TypeBlockDev {
		// "1, 3" or "1,3" (one token)
		var maj, min uint64
		last := pre[len(pre)-1].s
		if i := strings.IndexByte(last, ','); i > 0 && i < len(last)-1 {
			maj, _ = strconv.ParseUint(last[:i], 10, 32)
			min, _ = strconv.ParseUint(last[i+1:], 10, 32)
			pre = pre[:len(pre)-1]
		} else if len(pre) >= 2 && strings.HasSuffix(pre[len(pre)-2].s, ",") {
			maj, _ = strconv.ParseUint(strings.TrimSuffix(pre[len(pre)-2].s, ","), 10, 32)
			min, _ = strconv.ParseUint(last, 10, 32)
			pre = pre[:len(pre)-2]
		} else {
			pre = pre[:len(pre)-1]
		}
		e.Rdev = mkdev(maj, min)
	} else {
		sz, err := strconv.ParseInt(pre[len(pre)-1].s, 10, 64)
		if err != nil || sz < 0 {
			return e, errors.New("unix listing: bad size")
		}
		if e.Type == pool.TypeFile {
			e.Size = sz
		}
		pre = pre[:len(pre)-1]
	}
	// pre is now [links] owner [group].
	if len(pre) > 0 && isNumber(pre[0].s) && len(pre) > 1 {
		pre = pre[1:] // link count
	}
	if len(pre) > 0 {
		e.User = pre[0].s
	}
	if len(pre) > 1 {
		e.Group = pre[1].s
	}
	if id, err := strconv.ParseUint(e.User, 10, 32); err == nil {
		e.UID, e.HasUID, e.User = uint32(id), true, ""
	}
	if id, err := strconv.ParseUint(e.Group, 10, 32); err == nil {
		e.GID, e.HasGID, e.Group = uint32(id), true, ""
	}
	if e.Type == pool.TypeSymlink {
		if i := strings.Index(name, " -> "); i >= 0 {
			name, e.Target = name[:i], name[i+4:]
		}
	}
	if name == "" {
		return e, errors.New("unix listing: no name")
	}
	e.Name = name
	return e, nil
}

func isNumber(s string) bool {
	if s == "" || len(s) > 19 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// mkdev encodes a device number the way Linux does (and unix.Mkdev).
func mkdev(major, minor uint64) uint64 {
	return (major&0x00000fff)<<8 | (major&0xfffff000)<<32 | (minor&0x000000ff)<<0 | (minor&0xffffff00)<<12
}

// parsePerm reads "rwxr-xr-x" (with s/S/t/T), optionally followed by an
// ACL/xattr marker (+ . @).
func parsePerm(p string) (fs.FileMode, bool) {
	if len(p) < 9 {
		return 0, false
	}
	var m fs.FileMode
	bit := func(c byte, want byte, v fs.FileMode) bool {
		switch c {
		case want:
			m |= v
		case '-':
		default:
			return false
		}
		return true
	}
	exec := func(c byte, v, special fs.FileMode, lower, upper byte) bool {
		switch c {
		case 'x':
			m |= v
		case '-':
		case lower:
			m |= v | special
		case upper:
			m |= special
		default:
			return false
		}
		return true
	}
	ok := bit(p[0], 'r', 0o400) && bit(p[1], 'w', 0o200) && exec(p[2], 0o100, fs.ModeSetuid, 's', 'S') &&
		bit(p[3], 'r', 0o040) && bit(p[4], 'w', 0o020) && exec(p[5], 0o010, fs.ModeSetgid, 's', 'S') &&
		bit(p[6], 'r', 0o004) && bit(p[7], 'w', 0o002) && exec(p[8], 0o001, fs.ModeSticky, 't', 'T')
	return m, ok
}

func unixTime(mon, day, tOrY string, now time.Time) (time.Time, error) {
	m := months[strings.ToLower(mon)]
	d, _ := strconv.Atoi(day)
	if h, mi, ok := strings.Cut(tOrY, ":"); ok {
		hh, err1 := strconv.Atoi(h)
		mm, err2 := strconv.Atoi(mi)
		if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
			return time.Time{}, errors.New("unix listing: bad time")
		}
		now = now.UTC()
		t := time.Date(now.Year(), m, d, hh, mm, 0, 0, time.UTC)
		if t.After(now.Add(24 * time.Hour)) {
			t = time.Date(now.Year()-1, m, d, hh, mm, 0, 0, time.UTC)
		}
		return t, nil
	}
	y, err := strconv.Atoi(tOrY)
	if err != nil || y < 1900 || y > 9999 {
		return time.Time{}, errors.New("unix listing: bad year")
	}
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), nil
}

// parseWindows parses IIS/DOS style: "MM-DD-YY[YY]  HH:MM[AM|PM]  <DIR>|size  name".
func parseWindows(line string) (ListEntry, error) {
	var e ListEntry
	fs := fields(line, 3)
	if len(fs) < 3 {
		return e, errors.New("windows listing: too few fields")
	}
	date, clock, sz := fs[0].s, fs[1].s, fs[2].s
	dp := strings.Split(date, "-")
	if len(dp) != 3 {
		dp = strings.Split(date, "/")
	}
	if len(dp) != 3 {
		return e, errors.New("windows listing: bad date")
	}
	a, err1 := strconv.Atoi(dp[0])
	b, err2 := strconv.Atoi(dp[1])
	c, err3 := strconv.Atoi(dp[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return e, errors.New("windows listing: bad date")
	}
	var y, mo, d int
	if len(dp[0]) == 4 { // YYYY-MM-DD
		y, mo, d = a, b, c
	} else {
		mo, d, y = a, b, c
		if len(dp[2]) <= 2 {
			if y < 70 {
				y += 2000
			} else {
				y += 1900
			}
		}
	}
	if mo < 1 || mo > 12 || d < 1 || d > 31 || y < 1900 || y > 9999 {
		return e, errors.New("windows listing: bad date")
	}
	up := strings.ToUpper(clock)
	pm := strings.HasSuffix(up, "PM")
	am := strings.HasSuffix(up, "AM")
	if pm || am {
		up = up[:len(up)-2]
	}
	h, mi, ok := strings.Cut(up, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(mi)
	if !ok || err1 != nil || err2 != nil || mm < 0 || mm > 59 || hh < 0 || hh > 23 {
		return e, errors.New("windows listing: bad time")
	}
	if pm || am {
		if hh < 1 || hh > 12 {
			return e, errors.New("windows listing: bad time")
		}
		hh %= 12
		if pm {
			hh += 12
		}
	}
	e.ModTime = time.Date(y, time.Month(mo), d, hh, mm, 0, 0, time.UTC)
	if e.ModTime.Day() != d {
		return e, errors.New("windows listing: bad date")
	}
	if strings.EqualFold(sz, "<DIR>") {
		e.Type = pool.TypeDir
	} else {
		n, err := strconv.ParseInt(strings.ReplaceAll(sz, ",", ""), 10, 64)
		if err != nil || n < 0 {
			return e, errors.New("windows listing: bad size")
		}
		e.Type, e.Size = pool.TypeFile, n
	}
	rest := line[fs[2].end:]
	name := strings.TrimLeft(rest, " \t")
	if name == "" {
		return e, errors.New("windows listing: no name")
	}
	e.Name = name
	return e, nil
}

// ParseMLSDLine parses one line of an MLSD reply (RFC 3659):
// "fact=value;fact=value; name". It returns errSkip for cdir/pdir.
func ParseMLSDLine(line string) (ListEntry, error) {
	var e ListEntry
	line = strings.TrimRight(line, "\r\n")
	if len(line) > maxLineLen {
		return e, errors.New("mlsd: line too long")
	}
	facts, name, ok := strings.Cut(line, " ")
	if !ok || name == "" {
		return e, errors.New("mlsd: no name")
	}
	typ := ""
	for f := range strings.SplitSeq(facts, ";") {
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return e, errors.New("mlsd: bad fact")
		}
		switch strings.ToLower(k) {
		case "type":
			typ = v
		case "size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return e, errors.New("mlsd: bad size")
			}
			e.Size = n
		case "modify":
			t, err := parseMLSDTime(v)
			if err != nil {
				return e, err
			}
			e.ModTime, e.Precise = t, true
		case "unix.mode":
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return e, errors.New("mlsd: bad unix.mode")
			}
			e.Mode, e.HasMode = fs.FileMode(m&0o777), true
			if m&0o4000 != 0 {
				e.Mode |= fs.ModeSetuid
			}
			if m&0o2000 != 0 {
				e.Mode |= fs.ModeSetgid
			}
			if m&0o1000 != 0 {
				e.Mode |= fs.ModeSticky
			}
		case "unix.uid", "unix.owner":
			if id, err := strconv.ParseUint(v, 10, 32); err == nil {
				e.UID, e.HasUID = uint32(id), true
			} else {
				e.User = v
			}
		case "unix.gid", "unix.group":
			if id, err := strconv.ParseUint(v, 10, 32); err == nil {
				e.GID, e.HasGID = uint32(id), true
			} else {
				e.Group = v
			}
		case "unix.ownername":
			e.User = v
		case "unix.groupname":
			e.Group = v
		}
	}
	lt := strings.ToLower(typ)
	switch {
	case lt == "file":
		e.Type = pool.TypeFile
	case lt == "dir":
		e.Type = pool.TypeDir
	case lt == "cdir" || lt == "pdir":
		return e, errSkip
	case strings.HasPrefix(lt, "os.unix=slink") || strings.HasPrefix(lt, "os.unix=symlink"):
		e.Type = pool.TypeSymlink
		if _, target, ok := strings.Cut(typ, ":"); ok {
			e.Target = target
		}
		e.Size = 0
	default:
		return e, errors.New("mlsd: unsupported type " + strconv.Quote(typ))
	}
	if e.Type != pool.TypeFile {
		e.Size = 0
	}
	e.Name = name
	return e, nil
}

func parseMLSDTime(v string) (time.Time, error) {
	frac := ""
	if i := strings.IndexByte(v, '.'); i >= 0 {
		v, frac = v[:i], v[i+1:]
	}
	t, err := time.ParseInLocation("20060102150405", v, time.UTC)
	if err != nil {
		return time.Time{}, errors.New("mlsd: bad modify time")
	}
	if frac != "" {
		if len(frac) > 9 || !isNumber(frac) {
			return time.Time{}, errors.New("mlsd: bad modify time")
		}
		ns, _ := strconv.Atoi((frac + "000000000")[:9])
		t = t.Add(time.Duration(ns))
	}
	return t, nil
}
