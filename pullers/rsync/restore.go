package rsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// RestoreOptions say where a restore writes.
type RestoreOptions struct {
	// Dest is the remote directory to create and fill. Empty: a new
	// directory "cairn-restore-<UTC time>" inside Source.Path.
	Dest string
	// Now names the default directory; nil is time.Now.
	Now func() time.Time
}

// RestoreResult is what a restore sent.
type RestoreResult struct {
	Dest   string
	Files  int64
	Bytes  int64
	Errors []string // per-entry failures ("rel: error")
}

// RestoreDirName is the default directory name for a restore started at t.
func RestoreDirName(t time.Time) string {
	return "cairn-restore-" + t.UTC().Format("20060102T150405Z")
}

// Restore sends the subtree of fsys (a snapshot tree) to the host over SSH
// into a new directory: this package acts as the rsync sender, the remote
// "rsync --server" (protocol 27, -lptgoDr --numeric-ids) is the receiver.
// Files go whole (literal data, whole-file MD4); mode, owner, mtime,
// symlinks and devices are kept; hard links become copies. Only the ssh
// transport: daemon modules are usually read-only.
func (p *Puller) Restore(ctx context.Context, fsys fs.FS, subtree string, s pullers.Source, o RestoreOptions) (*RestoreResult, error) {
	t, err := parseTarget(s)
	if err != nil {
		return nil, err
	}
	if !t.ssh {
		return nil, fmt.Errorf("%s: restore needs the ssh transport", t)
	}
	if subtree == "" {
		subtree = "."
	}
	if !fs.ValidPath(subtree) {
		return nil, fmt.Errorf("rsync restore: invalid subtree %q", subtree)
	}
	dest := o.Dest
	if dest == "" {
		now := time.Now
		if o.Now != nil {
			now = o.Now
		}
		dest = path.Join(t.path, RestoreDirName(now()))
	}
	if strings.ContainsAny(dest, "\x00\n") {
		return nil, fmt.Errorf("rsync restore: bad destination %q", dest)
	}
	list, err := restoreList(fsys, subtree)
	if err != nil {
		return nil, fmt.Errorf("rsync restore: %w", err)
	}
	rt := *t
	rt.path = path.Clean(dest)
	rt.numeric = true
	rt.xattrs, rt.acls = false, false // protocol 27: not sent back
	args := func(int) []string { return []string{"--server", "-lptgoDr", "--numeric-ids", "."} }
	sess, err := p.openSSHCmd(ctx, &rt, args, rt.path+"/", protocolOld)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { sess.closer() })
	defer func() {
		stop()
		sess.closer()
	}()
	res := &RestoreResult{Dest: rt.path}
	err = p.send(ctx, &rt, sess, fsys, subtree, list, res)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		if m := sess.stderr.String(); m != "" {
			err = fmt.Errorf("%w (remote: %s)", err, short(m))
		}
		return nil, err
	}
	return res, nil
}

type sendEntry struct {
	rel string // "." or relative to the subtree
	e   pool.Entry
}

// restoreList walks the subtree, sorted as rsync sorts its list.
func restoreList(fsys fs.FS, subtree string) ([]sendEntry, error) {
	var out []sendEntry
	err := fs.WalkDir(fsys, subtree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e, ok := info.Sys().(*pool.Entry)
		if !ok {
			return fmt.Errorf("%s: not a snapshot entry", p)
		}
		rel := "."
		if p != subtree {
			rel = strings.TrimPrefix(p, subtree+"/")
			if subtree == "." {
				rel = p
			}
		}
		out = append(out, sendEntry{rel: rel, e: *e})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 || out[0].e.Type != pool.TypeDir {
		return nil, fmt.Errorf("%s is not a directory", subtree)
	}
	slices.SortFunc(out, func(a, b sendEntry) int { return strings.Compare(a.rel, b.rel) })
	return out, nil
}

func rawMode(e *pool.Entry) uint32 {
	m := uint32(e.Mode & 0o777)
	if e.Mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if e.Mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if e.Mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	switch e.Type {
	case pool.TypeDir:
		m |= sIFDIR
	case pool.TypeSymlink:
		m |= sIFLNK
	case pool.TypeCharDev:
		m |= sIFCHR
	case pool.TypeBlockDev:
		m |= sIFBLK
	case pool.TypeFIFO:
		m |= sIFIFO
	case pool.TypeSocket:
		m |= sIFSOCK
	default:
		m |= sIFREG
	}
	return m
}

// send runs the sender side after the version exchange.
func (p *Puller) send(ctx context.Context, t *target, s *session, fsys fs.FS, subtree string, list []sendEntry, res *RestoreResult) error {
	raw := &rawReader{r: s.in}
	seed, err := raw.int32("checksum seed")
	if err != nil {
		return fmt.Errorf("%s: %w", t, err)
	}
	w := s.out
	for _, se := range list {
		e := &se.e
		w.WriteByte(xmitLongName)
		putInt(w, int32(len(se.rel)))
		w.WriteString(se.rel)
		size := int64(0)
		if e.Type == pool.TypeFile {
			size = e.Size
		}
		if size > 1<<31-2 {
			putInt(w, -1)
			var b [8]byte
			for i := range b {
				b[i] = byte(size >> (8 * i))
			}
			w.Write(b[:])
		} else {
			putInt(w, int32(size))
		}
		putInt(w, int32(e.ModTime/1e9))
		putInt(w, int32(rawMode(e)))
		putInt(w, int32(e.UID))
		putInt(w, int32(e.GID))
		switch e.Type {
		case pool.TypeCharDev, pool.TypeBlockDev, pool.TypeFIFO, pool.TypeSocket:
			putInt(w, int32(e.Rdev))
		case pool.TypeSymlink:
			putInt(w, int32(len(e.Target)))
			w.WriteString(e.Target)
		}
	}
	w.WriteByte(0)
	putInt(w, 0) // io_error
	if err := w.Flush(); err != nil {
		return fmt.Errorf("%s: send the file list: %w", t, err)
	}
	r := &rawReader{r: newDemux(s.in)}
	buf := make([]byte, chunkSize)
	phase := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ndx, err := r.int32("file index")
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		if ndx == -1 {
			phase++
			putInt(w, -1)
			if err := w.Flush(); err != nil {
				return err
			}
			if phase == 2 {
				break
			}
			continue
		}
		if ndx < 0 || int(ndx) >= len(list) || list[ndx].e.Type != pool.TypeFile {
			return fmt.Errorf("%s: %w", t, protoErr("the receiver asked for entry %d", ndx))
		}
		var h sumHead
		for _, v := range []*int32{&h.count, &h.blen, &h.s2len, &h.rem} {
			if *v, err = r.int32("sum head"); err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
		}
		if h.count < 0 || h.s2len < 0 || h.s2len > 64 || h.blen < 0 || h.blen > maxBlockWire {
			return fmt.Errorf("%s: %w", t, protoErr("bad checksum header %+v", h))
		}
		// No block matching: the basis sums are read and ignored.
		for range h.count {
			if err := r.full(make([]byte, 4+int(h.s2len)), "block sums"); err != nil {
				return fmt.Errorf("%s: %w", t, err)
			}
		}
		se := list[ndx]
		name := se.rel
		if subtree != "." {
			name = path.Join(subtree, se.rel)
		}
		f, err := fsys.Open(name)
		if err != nil {
			res.Errors = append(res.Errors, se.rel+": "+err.Error())
			continue // not sent: the receiver records it
		}
		putInt(w, ndx)
		putHead(w, h)
		sum := newSum(seed)
		var n int64
		for {
			k, rerr := f.Read(buf[:min(int64(len(buf)), se.e.Size-n)])
			if k > 0 {
				putInt(w, int32(k))
				w.Write(buf[:k])
				sum.Write(buf[:k])
				n += int64(k)
			}
			if n == se.e.Size || rerr != nil {
				if rerr != nil && !errors.Is(rerr, io.EOF) {
					res.Errors = append(res.Errors, se.rel+": "+rerr.Error())
				}
				break
			}
		}
		f.Close()
		putInt(w, 0)
		w.Write(sum.Sum(nil))
		if err := w.Flush(); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		res.Files++
		res.Bytes += n
	}
	// The receiver's goodbye.
	if v, err := r.int32("goodbye"); err != nil || v != -1 {
		if err == nil {
			err = protoErr("goodbye %d", v)
		}
		return fmt.Errorf("%s: %w", t, err)
	}
	return nil
}
