package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/pool"
)

func init() {
	register(&command{name: "ls", short: "list a directory of a snapshot (SNAP[/path])", run: runLs})
}

// resolveSnap finds the snapshot named by ref: a full ID, a unique prefix
// of one, or "latest" (the newest, of host when host is set).
func resolveSnap(ctx context.Context, p *pool.Pool, ref, host string) (*pool.Manifest, error) {
	if ref == "" {
		return nil, errors.New("no snapshot given (an ID, a unique ID prefix, or latest)")
	}
	var match []*pool.Manifest
	err := p.Snapshots(ctx, func(m *pool.Manifest) error {
		if host != "" && m.Host != host {
			return nil
		}
		switch {
		case ref == "latest":
			if len(match) == 0 || newer(m, match[0]) {
				match = []*pool.Manifest{m}
			}
		case m.ID == ref:
			match = []*pool.Manifest{m}
			return errStop
		case strings.HasPrefix(m.ID, ref):
			match = append(match, m)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	switch len(match) {
	case 0:
		if ref == "latest" {
			if host != "" {
				return nil, fmt.Errorf("no snapshots of host %q in pool %s", host, p.Location())
			}
			return nil, fmt.Errorf("no snapshots in pool %s", p.Location())
		}
		return nil, fmt.Errorf("no snapshot %q in pool %s (see `cairn snapshot ls`)", ref, p.Location())
	case 1:
		return match[0], nil
	}
	return nil, fmt.Errorf("snapshot prefix %q is ambiguous: %s, %s…", ref, match[0].ID, match[1].ID)
}

var errStop = errors.New("stop")

// splitSnapPath splits "SNAP/some/path" into the snapshot reference and a
// clean relative path ("." for the root).
func splitSnapPath(arg string) (ref, rel string, err error) {
	ref, rel, _ = strings.Cut(arg, "/")
	rel = strings.Trim(rel, "/")
	if rel == "" {
		return ref, ".", nil
	}
	for el := range strings.SplitSeq(rel, "/") {
		if !pool.ValidName(el) {
			return "", "", fmt.Errorf("bad path %q in %q", el, arg)
		}
	}
	return ref, rel, nil
}

// lsEntry is the JSON form of a listed entry.
type lsEntry struct {
	Name     string            `json:"name"`
	Path     string            `json:"path"`
	Type     string            `json:"type"`
	Mode     string            `json:"mode"`
	Perm     string            `json:"perm"` // octal, with setuid/setgid/sticky: "4755"
	UID      uint32            `json:"uid"`
	GID      uint32            `json:"gid"`
	User     string            `json:"user,omitempty"`
	Group    string            `json:"group,omitempty"`
	Size     int64             `json:"size"`
	MTime    time.Time         `json:"mtime"`
	MTimeNs  int64             `json:"mtime_ns"`
	Target   string            `json:"target,omitempty"`
	HardLink uint64            `json:"hardlink,omitempty"`
	Rdev     uint64            `json:"rdev,omitempty"`
	Xattrs   map[string][]byte `json:"xattrs,omitempty"`
	Content  *pool.Digest      `json:"content,omitempty"`
	Chunked  bool              `json:"chunked,omitempty"`
}

func toLsEntry(dir string, e *pool.Entry) lsEntry {
	p := e.Name
	if dir != "." && dir != "" {
		p = dir + "/" + e.Name
	}
	fm := e.FileMode()
	le := lsEntry{Name: e.Name, Path: p, Type: e.Type.String(), Mode: modeString(e),
		Perm: fmt.Sprintf("%04o", uint32(fm.Perm())|unixSpecialBits(fm)), UID: e.UID, GID: e.GID, User: e.User, Group: e.Group,
		Size: e.Size, MTime: time.Unix(0, e.ModTime).UTC(), MTimeNs: e.ModTime, Target: e.Target,
		HardLink: e.HardLink, Rdev: e.Rdev, Xattrs: e.Xattrs, Chunked: e.Chunked}
	if !e.Content.IsZero() {
		d := e.Content
		le.Content = &d
	}
	return le
}

func unixSpecialBits(m fs.FileMode) uint32 {
	var b uint32
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

func runLs(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	pf := addPoolFlags(fs)
	host := fs.String("host", "", "with latest: the newest snapshot of this host")
	asJSON := fs.Bool("json", false, "print a JSON array of entries")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: cairn ls --pool P [--json] SNAP[/path]\n\n"+
			"Lists a directory of a snapshot (or one entry, when path is not a directory).\n"+
			"SNAP is a snapshot ID, a unique prefix of one, or latest.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	ref, rel, err := splitSnapPath(pos[0])
	if err != nil {
		return err
	}
	p, err := pf.open(ctx)
	if err != nil {
		return err
	}
	m, err := resolveSnap(ctx, p, ref, *host)
	if err != nil {
		return err
	}
	e, err := p.Lookup(ctx, m.Root, rel)
	if err != nil {
		if errors.Is(err, pool.ErrNotFound) {
			return fmt.Errorf("%s: no such file or directory in snapshot %s", rel, m.ID)
		}
		return err
	}
	var entries []pool.Entry
	dir := rel
	if e.Type == pool.TypeDir {
		entries, err = p.ReadTree(ctx, e.Subtree)
		if err != nil {
			return fmt.Errorf("read directory %s of snapshot %s: %w", rel, m.ID, err)
		}
	} else {
		entries = []pool.Entry{e}
		dir = parentOf(rel)
	}
	if *asJSON {
		out := make([]lsEntry, 0, len(entries))
		for i := range entries {
			out = append(out, toLsEntry(dir, &entries[i]))
		}
		return printJSON(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 1, ' ', 0)
	for i := range entries {
		e := &entries[i]
		name := quoteName(e.Name)
		if e.Type == pool.TypeSymlink {
			name += " -> " + quoteName(e.Target)
		}
		size := strconv.FormatInt(e.Size, 10)
		if e.Type == pool.TypeCharDev || e.Type == pool.TypeBlockDev {
			size = fmt.Sprintf("%d, %d", unix.Major(e.Rdev), unix.Minor(e.Rdev))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", modeString(e), owner(e.User, e.UID), owner(e.Group, e.GID),
			size, time.Unix(0, e.ModTime).Local().Format("2006-01-02 15:04:05"), name)
	}
	return tw.Flush()
}

// modeString renders a mode as ls -l does: drwxr-sr-t.
func modeString(e *pool.Entry) string {
	t := map[pool.EntryType]byte{pool.TypeDir: 'd', pool.TypeSymlink: 'l', pool.TypeCharDev: 'c',
		pool.TypeBlockDev: 'b', pool.TypeFIFO: 'p', pool.TypeSocket: 's'}[e.Type]
	if t == 0 {
		t = '-'
	}
	b := []byte{t}
	perm := e.Mode.Perm()
	special := [3]struct {
		bit      fs.FileMode
		set, low byte
	}{{fs.ModeSetuid, 'S', 's'}, {fs.ModeSetgid, 'S', 's'}, {fs.ModeSticky, 'T', 't'}}
	for i := range 3 {
		shift := uint(6 - 3*i)
		r, w, x := perm>>(shift+2)&1 != 0, perm>>(shift+1)&1 != 0, perm>>shift&1 != 0
		b = append(b, "-r"[btoi(r)], "-w"[btoi(w)])
		c := "-x"[btoi(x)]
		if e.Mode&special[i].bit != 0 {
			c = special[i].set
			if x {
				c = special[i].low
			}
		}
		b = append(b, c)
	}
	return string(b)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func parentOf(rel string) string {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i]
	}
	return "."
}

func owner(name string, id uint32) string {
	if name != "" {
		return quoteName(name)
	}
	return strconv.FormatUint(uint64(id), 10)
}

// quoteName returns name as is when it is printable UTF-8, else a Go
// quoted string, so a hostile name cannot move the cursor or fake lines.
func quoteName(name string) string {
	if !utf8.ValidString(name) {
		return strconv.Quote(name)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) && r != ' ' {
			return strconv.Quote(name)
		}
	}
	return name
}
