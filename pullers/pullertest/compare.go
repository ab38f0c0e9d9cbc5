package pullertest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/pool"
)

// Capabilities say which metadata a protocol carries; Compare checks
// exactly those. CAPABILITIES.md has the table per protocol.
type Capabilities struct {
	Mode       bool          // permission bits, setuid/setgid/sticky
	Owner      bool          // numeric UID/GID
	OwnerNames bool          // User/Group names
	MtimeRes   time.Duration // mtime resolution (1ns, 100ns, 1s); 0: no mtime
	DirMtime   bool          // directories' mtimes too
	Symlinks   bool          // symlinks recorded as links with their targets
	HardLinks  bool          // Entry.HardLink groups
	Xattrs     bool          // extended attributes
	// AllNames: every POSIX name survives. When false, names that are not
	// valid on Windows (\ : * ? " < > | control characters, trailing dot
	// or space) may be missing, mangled or errors.
	AllNames bool
	// DeepPaths: paths longer than 4096 bytes are carried; when false the
	// deep/ subtree may end early with per-file errors.
	DeepPaths bool
	// Unreadable: the puller cannot read NoReadPath (it runs as a user
	// the mode-0000 file keeps out) and must record a per-file error.
	Unreadable bool
	// Extra lists Entry.Extra keys every file and directory must carry.
	Extra []string
}

// Result summarises one Compare.
type Result struct {
	Files    int  // regular files compared by content
	NonEmpty int  // of which non-empty
	Changed  bool // ChangePath was stored with its new content
}

// windowsInvalid reports whether name cannot exist on Windows.
func windowsInvalid(name string) bool {
	if strings.ContainsAny(name, `\/:*?"<>|`) || strings.HasSuffix(name, ".") || strings.HasSuffix(name, " ") {
		return true
	}
	for _, r := range name {
		if r < 0x20 {
			return true
		}
	}
	return false
}

// Compare checks the snapshot fsys (Pool.SnapshotFS of m) against the
// scenario's source tree as it is now. See the package documentation.
func Compare(t testing.TB, s *Scenario, fsys fs.FS, m *pool.Manifest, caps Capabilities) Result {
	t.Helper()
	return compare(t, s, fsys, m, caps, false)
}

// CompareStable is Compare for a snapshot taken after the hooks fired (a
// later, incremental one): nothing vanishes or changes during it, so
// ChangePath must hold its new content, and the snapshot is partial only
// when the protocol leaves per-file errors of its own.
func CompareStable(t testing.TB, s *Scenario, fsys fs.FS, m *pool.Manifest, caps Capabilities) Result {
	t.Helper()
	return compare(t, s, fsys, m, caps, true)
}

func compare(t testing.TB, s *Scenario, fsys fs.FS, m *pool.Manifest, caps Capabilities, stable bool) Result {
	t.Helper()
	c := &comparer{t: t, s: s, fsys: fsys, caps: caps, stable: stable, links: map[[2]uint64]map[uint64]bool{}, ids: map[uint64][2]uint64{}}
	fd, err := unix.Open(s.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("pullertest: open source %s: %v", s.Dir, err)
	}
	defer unix.Close(fd)
	c.dir(fd, "")
	c.checkLinks()
	c.checkManifest(m)
	return c.res
}

type comparer struct {
	t      testing.TB
	s      *Scenario
	fsys   fs.FS
	caps   Capabilities
	stable bool
	res    Result
	links  map[[2]uint64]map[uint64]bool // source inode → HardLink ids seen
	ids    map[uint64][2]uint64          // HardLink id → source inode
}

func (c *comparer) errorf(format string, args ...any) {
	c.t.Helper()
	c.t.Errorf("pullertest: %s", Short(fmt.Sprintf(format, args...)))
}

// Short elides the middle of a long message (deep paths are 4 KiB).
func Short(s string) string {
	if len(s) <= 400 {
		return s
	}
	return s[:200] + fmt.Sprintf("…(%d bytes)…", len(s)-400) + s[len(s)-200:]
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// skipSource: source entries the protocol may not carry at all.
func (c *comparer) skipSource(rel string, st *unix.Stat_t) bool {
	if !c.caps.AllNames && windowsInvalid(path.Base(rel)) {
		return true
	}
	if !c.caps.Symlinks && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return true
	}
	return false
}

// mayMiss: source entries the snapshot may lack (with an error).
func (c *comparer) mayMiss(rel string) bool {
	switch {
	case rel == ChangePath:
		return !c.stable
	case rel == NoReadPath && c.caps.Unreadable:
		return true
	case rel == UnreadablePath && c.s.Unreadable:
		return true
	case !c.caps.DeepPaths && strings.HasPrefix(rel, DeepDir+"/"):
		return true
	}
	return false
}

// extrasAllowed: directories where the snapshot may hold names the
// source does not (mangled names, followed links).
func (c *comparer) extrasAllowed(rel string) bool {
	return (!c.caps.AllNames && (rel == "names" || rel == "")) || (!c.caps.Symlinks && rel == LinksDir)
}

func (c *comparer) dir(fd int, rel string) {
	c.t.Helper()
	names, err := readNames(fd)
	if err != nil {
		c.t.Fatalf("pullertest: list source %s: %v", rel, err)
	}
	slices.Sort(names)
	snapRel := rel
	if snapRel == "" {
		snapRel = "."
	}
	des, err := fs.ReadDir(c.fsys, snapRel)
	if err != nil {
		if c.mayMiss(rel) {
			return
		}
		c.errorf("snapshot directory %q: %v", snapRel, err)
		return
	}
	snap := map[string]*pool.Entry{}
	for _, de := range des {
		info, err := de.Info()
		if err != nil {
			c.errorf("snapshot %q: %v", join(rel, de.Name()), err)
			continue
		}
		e, ok := info.Sys().(*pool.Entry)
		if !ok {
			c.t.Fatalf("pullertest: snapshot FileInfo.Sys() is %T, want *pool.Entry", info.Sys())
		}
		snap[de.Name()] = e
	}
	seen := map[string]bool{}
	for _, name := range names {
		crel := join(rel, name)
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			c.t.Fatalf("pullertest: stat source %s: %v", crel, err)
		}
		if c.skipSource(crel, &st) {
			if e := snap[name]; e != nil && name == "outside" && e.Type == pool.TypeDir {
				c.errorf("%s: a symlink out of the source was followed into a directory", crel)
			}
			continue
		}
		seen[name] = true
		e := snap[name]
		if crel == UnreadablePath && c.s.Unreadable {
			if e != nil {
				c.errorf("%s: a file nobody can read is in the snapshot (%s, %d bytes)", crel, e.Type, e.Size)
			}
			continue
		}
		if e == nil {
			if !c.mayMiss(crel) {
				c.errorf("%s: missing from the snapshot", crel)
			}
			continue
		}
		c.entry(fd, name, crel, &st, e)
	}
	for name, e := range snap {
		if seen[name] {
			continue
		}
		crel := join(rel, name)
		switch {
		case crel == VanishPath:
			c.errorf("%s: the vanished file is in the snapshot", crel)
		case c.extrasAllowed(rel):
			if name == "outside" && e.Type == pool.TypeDir {
				c.errorf("%s: a symlink out of the source was followed into a directory", crel)
			}
		default:
			c.errorf("%s: in the snapshot but not in the source (%s)", crel, e.Type)
		}
	}
}

func srcType(m uint32) pool.EntryType {
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		return pool.TypeDir
	case unix.S_IFLNK:
		return pool.TypeSymlink
	case unix.S_IFREG:
		return pool.TypeFile
	}
	return 0
}

func srcMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

func (c *comparer) entry(dirfd int, name, rel string, st *unix.Stat_t, e *pool.Entry) {
	c.t.Helper()
	typ := srcType(st.Mode)
	if e.Type != typ {
		c.errorf("%s: type %s in the snapshot, %s in the source", rel, e.Type, typ)
		return
	}
	if c.caps.Mode && typ != pool.TypeSymlink && e.Mode != srcMode(st.Mode) {
		c.errorf("%s: mode %v, want %v", rel, e.Mode, srcMode(st.Mode))
	}
	if c.caps.Owner && (e.UID != st.Uid || e.GID != st.Gid) {
		c.errorf("%s: owner %d:%d, want %d:%d", rel, e.UID, e.GID, st.Uid, st.Gid)
	}
	if c.caps.OwnerNames {
		if u, err := user.LookupId(strconv.Itoa(int(st.Uid))); err == nil && e.User != u.Username {
			c.errorf("%s: user %q, want %q", rel, e.User, u.Username)
		}
		if g, err := user.LookupGroupId(strconv.Itoa(int(st.Gid))); err == nil && e.Group != g.Name {
			c.errorf("%s: group %q, want %q", rel, e.Group, g.Name)
		}
	}
	if res := c.caps.MtimeRes; res > 0 && (typ != pool.TypeDir || c.caps.DirMtime) && rel != "v" && rel != ChangePath {
		want := st.Mtim.Nano() / int64(res) * int64(res)
		if e.ModTime != want {
			c.errorf("%s: mtime %s, want %s (resolution %v)", rel, time.Unix(0, e.ModTime).UTC().Format(time.RFC3339Nano),
				time.Unix(0, want).UTC().Format(time.RFC3339Nano), res)
		}
	}
	for _, k := range c.caps.Extra {
		if typ != pool.TypeSymlink && e.Extra[k] == "" {
			c.errorf("%s: no Extra[%q] (Extra %v)", rel, k, e.Extra)
		}
	}
	if c.caps.Xattrs && c.s.Xattrs && rel == XattrPath && string(e.Xattrs["user.cairn"]) != "pullertest" {
		c.errorf("%s: xattr user.cairn = %q, want %q", rel, e.Xattrs["user.cairn"], "pullertest")
	}
	switch typ {
	case pool.TypeDir:
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			c.t.Fatalf("pullertest: open source %s: %v", rel, err)
		}
		defer unix.Close(fd)
		c.dir(fd, rel)
	case pool.TypeSymlink:
		buf := make([]byte, 4096)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			c.t.Fatalf("pullertest: readlink source %s: %v", rel, err)
		}
		if e.Target != string(buf[:n]) {
			c.errorf("%s: symlink target %q, want %q", rel, e.Target, buf[:n])
		}
	case pool.TypeFile:
		c.file(dirfd, name, rel, st, e)
	}
	if c.caps.HardLinks && typ != pool.TypeDir {
		ino := [2]uint64{st.Dev, st.Ino}
		if st.Nlink > 1 {
			if e.HardLink == 0 {
				c.errorf("%s: has %d links in the source but no HardLink id", rel, st.Nlink)
			} else {
				if c.links[ino] == nil {
					c.links[ino] = map[uint64]bool{}
				}
				c.links[ino][e.HardLink] = true
			}
		}
		if e.HardLink != 0 {
			if prev, ok := c.ids[e.HardLink]; ok && prev != ino {
				c.errorf("%s: HardLink id %d also used for another inode", rel, e.HardLink)
			}
			c.ids[e.HardLink] = ino
		}
	}
}

func (c *comparer) file(dirfd int, name, rel string, st *unix.Stat_t, e *pool.Entry) {
	c.t.Helper()
	got, gerr := c.snapSum(rel)
	if gerr != nil {
		c.errorf("%s: read from the snapshot: %v", rel, gerr)
		return
	}
	c.res.Files++
	if e.Size > 0 {
		c.res.NonEmpty++
	}
	if rel == ChangePath {
		switch got {
		case sha256.Sum256(c.s.OldChange):
			if c.stable {
				c.errorf("%s: old content in a snapshot taken after the change", rel)
			}
		case sha256.Sum256(c.s.NewChange):
			c.res.Changed = true
		default:
			c.errorf("%s: content (%d bytes) is neither the old nor the new version: a mix", rel, e.Size)
		}
		return
	}
	if e.Size != st.Size {
		c.errorf("%s: size %d, want %d", rel, e.Size, st.Size)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		c.t.Fatalf("pullertest: open source %s: %v", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		c.t.Fatalf("pullertest: read source %s: %v", rel, err)
	}
	if want := h.Sum(nil); !bytes.Equal(got[:], want) {
		c.errorf("%s: content digest %x, want %x", rel, got[:8], want[:8])
	}
}

func (c *comparer) snapSum(rel string) ([32]byte, error) {
	f, err := c.fsys.Open(rel)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	return [32]byte(h.Sum(nil)), nil
}

func (c *comparer) checkLinks() {
	for ino, ids := range c.links {
		if len(ids) != 1 {
			c.errorf("inode %d: its names have %d different HardLink ids, want one", ino[1], len(ids))
		}
	}
}

// checkManifest: partial with the required errors, and no other error
// than the scenario allows.
func (c *comparer) checkManifest(m *pool.Manifest) {
	c.t.Helper()
	switch {
	case !c.stable && m.Status != pool.StatusPartial:
		c.errorf("snapshot status %q, want %q (a vanished file is a per-file error)", m.Status, pool.StatusPartial)
	case m.ErrorCount == 0 && m.Status != pool.StatusComplete, m.ErrorCount > 0 && m.Status != pool.StatusPartial:
		c.errorf("snapshot status %q with %d per-file errors", m.Status, m.ErrorCount)
	}
	has := func(p string) bool {
		for _, e := range m.Errors {
			if strings.HasPrefix(e, p+": ") {
				return true
			}
		}
		return false
	}
	if len(m.Errors) == m.ErrorCount {
		if fired, _ := c.s.Fired(); fired && !c.stable && !has(VanishPath) {
			c.errorf("no per-file error for the vanished %s; errors: %q", VanishPath, m.Errors)
		}
		if c.s.Unreadable && !has(UnreadablePath) {
			c.errorf("no per-file error for the unreadable %s; errors: %q", UnreadablePath, m.Errors)
		}
		if c.caps.Unreadable && !has(NoReadPath) {
			c.errorf("no per-file error for the unreadable %s; errors: %q", NoReadPath, m.Errors)
		}
	}
	for _, e := range m.Errors {
		if !c.allowedError(e) {
			c.errorf("unexpected per-file error %q", e)
		}
	}
}

func (c *comparer) allowedError(e string) bool {
	if !c.stable && (strings.HasPrefix(e, VanishPath+": ") || strings.HasPrefix(e, ChangePath+": ")) {
		return true
	}
	if c.caps.Unreadable && strings.HasPrefix(e, NoReadPath+": ") {
		return true
	}
	if c.s.Unreadable && strings.HasPrefix(e, UnreadablePath+": ") {
		return true
	}
	if !c.caps.DeepPaths && strings.HasPrefix(e, DeepDir+"/") {
		return true
	}
	if !c.caps.Symlinks && strings.HasPrefix(e, LinksDir+"/") {
		return true
	}
	if !c.caps.AllNames && strings.HasPrefix(e, "names/") {
		// Only for a name the protocol cannot carry.
		for _, n := range Names {
			if windowsInvalid(n) && strings.HasPrefix(e, "names/"+n+": ") {
				return true
			}
		}
	}
	return false
}
