package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DirBackend stores each name as a file under a local directory.
//
// Writes go to a temporary file in the target directory and are renamed
// into place, so readers never see a partial object; there is no fsync per
// object — Sync (syncfs) is the barrier. Every name is resolved beneath
// the root without following symlinks (openat2 with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS, or os.Root where openat2 is missing), so neither a
// hostile name nor a symlink planted in the tree can reach outside the
// root.
type DirBackend struct {
	path string   // absolute root path, for messages
	root *os.Root // listing, and all access when fd < 0
	fd   int      // root directory fd for the openat2 fast path; -1 without it
	dirs sync.Map // directory name → struct{}: known to exist (os.Root path)

	abMu   sync.Mutex
	ab     [256]int            // fd+1 of objects/00 … objects/ff; 0: not open
	abDead []int               // fds of removed objects/ab dirs, closed by Close
	cdSeen [1024]atomic.Uint64 // bit abcd: objects/ab/cd is known to exist
}

var (
	_ Backend = (*DirBackend)(nil)
	_ Syncer  = (*DirBackend)(nil)
)

// NewDirBackend opens the existing directory root as a backend. A missing
// root is an error wrapping ErrNotFound; use CreateDirBackend to make it.
func NewDirBackend(root string) (*DirBackend, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("dir backend %s: %w", root, err)
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("dir backend %s: directory does not exist: %w", abs, ErrNotFound)
		}
		return nil, fmt.Errorf("dir backend %s: %w", abs, pathErr(err))
	}
	return &DirBackend{path: abs, root: r, fd: openFast(abs)}, nil
}

// CreateDirBackend is NewDirBackend that first creates root (mode 0700)
// and its parents when missing.
func CreateDirBackend(root string) (*DirBackend, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("dir backend %s: create: %w", root, pathErr(err))
	}
	return NewDirBackend(root)
}

// Close releases the root directory handle.
func (b *DirBackend) Close() error {
	if b.fd >= 0 {
		unix.Close(b.fd)
		b.fd = -1
	}
	b.abMu.Lock()
	for i, fd := range b.ab {
		if fd > 0 {
			unix.Close(fd - 1)
		}
		b.ab[i] = 0
	}
	for _, fd := range b.abDead {
		unix.Close(fd)
	}
	b.abDead = nil
	b.abMu.Unlock()
	return b.root.Close()
}

// Location returns the absolute root path.
func (b *DirBackend) Location() string { return b.path }

// pathErr strips an *fs.PathError to its cause: our messages name the
// full path themselves, and os.Root's relative paths would confuse.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

func (b *DirBackend) full(name string) string { return filepath.Join(b.path, filepath.FromSlash(name)) }

func (b *DirBackend) wrap(op, name string, err error) error {
	// A file where a directory of the name should be also means "no such
	// object" — except when writing, where it is a real conflict.
	if errors.Is(err, fs.ErrNotExist) || (op != "write" && errors.Is(err, syscall.ENOTDIR)) {
		return fmt.Errorf("%s %s: %w", op, b.full(name), ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, b.full(name), pathErr(err))
}

func (b *DirBackend) ensureDir(dir string) error {
	if dir == "." {
		return nil
	}
	if _, ok := b.dirs.Load(dir); ok {
		return nil
	}
	if err := b.root.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b.dirs.Store(dir, struct{}{})
	return nil
}

func tempName(dir string) string {
	var r [8]byte
	rand.Read(r[:])
	return path.Join(dir, ".tmp-"+hex.EncodeToString(r[:]))
}

// Put writes r (size bytes; size < 0 means unknown) to name atomically.
func (b *DirBackend) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.fd >= 0 {
		return b.putFast(name, r, size)
	}
	dir := path.Dir(name)
	if err := b.ensureDir(dir); err != nil {
		return fmt.Errorf("write %s: create directory %s: %w", b.full(name), b.full(dir), pathErr(err))
	}
	tmp := tempName(dir)
	f, err := b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		// The directory vanished behind our cache (e.g. removed by hand).
		b.dirs.Delete(dir)
		if err = b.ensureDir(dir); err == nil {
			f, err = b.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return b.wrap("write", name, err)
	}
	n, err := io.Copy(f, r)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("short input: wrote %d of %d bytes", n, size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = b.root.Rename(tmp, name)
	}
	if err != nil {
		b.root.Remove(tmp)
		return b.wrap("write", name, err)
	}
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Get opens name for reading from off, for length bytes (< 0: to the end).
func (b *DirBackend) Get(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", name, off)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.fd >= 0 {
		return b.getFast(name, off, length)
	}
	f, err := b.root.Open(name)
	if err != nil {
		return nil, b.wrap("read", name, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err == nil && off > 0 {
		_, err = f.Seek(off, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, b.wrap("read", name, err)
	}
	if length < 0 {
		return f, nil
	}
	return readCloser{io.LimitReader(f, length), f}, nil
}

// Stat returns the size and modification time of name.
func (b *DirBackend) Stat(ctx context.Context, name string) (ObjectInfo, error) {
	if err := ValidateName(name); err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, err
	}
	if b.fd >= 0 {
		return b.statFast(name)
	}
	fi, err := b.root.Stat(name)
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		return ObjectInfo{}, b.wrap("stat", name, err)
	}
	return ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List walks only the directories that can hold names with prefix.
func (b *DirBackend) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	if err := validPrefix(prefix); err != nil {
		return err
	}
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i > 0 {
		start = prefix[:i]
	}
	err := fs.WalkDir(b.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // the start dir does not exist, or a dir vanished mid-walk
			}
			return b.wrap("list", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		if d.IsDir() {
			if p != "." && !strings.HasPrefix(p+"/", prefix) && !strings.HasPrefix(prefix, p+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(p, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while we walked
			}
			return b.wrap("list", p, err)
		}
		return fn(ObjectInfo{Name: p, Size: fi.Size(), ModTime: fi.ModTime()})
	})
	return err
}

// Delete removes name; a missing name is not an error.
func (b *DirBackend) Delete(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.fd >= 0 {
		return b.deleteFast(name)
	}
	if err := b.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return b.wrap("delete", name, err)
	}
	return nil
}

// Sync flushes the whole filesystem holding the root (syncfs(2)): one
// call makes every earlier Put, and the renames that published it,
// durable.
func (b *DirBackend) Sync(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.fd >= 0 {
		if err := unix.Syncfs(b.fd); err != nil {
			return fmt.Errorf("sync %s: %w", b.path, err)
		}
		return nil
	}
	f, err := b.root.Open(".")
	if err != nil {
		return fmt.Errorf("sync %s: %w", b.path, pathErr(err))
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", b.path, err)
	}
	return nil
}

// A TempCleaner is a Backend that can leave temporary files behind after a
// crash (a local directory) and can remove them. GC calls it through
// (*Pool).CleanTemp.
type TempCleaner interface {
	// CleanTemp removes temporary files last modified before cutoff and
	// returns how many it removed.
	CleanTemp(ctx context.Context, cutoff time.Time) (int, error)
}

var _ TempCleaner = (*DirBackend)(nil)

// CleanTemp removes .tmp-* files older than cutoff anywhere below the
// root: leftovers of Puts interrupted by a crash. A cutoff well in the
// past (GC's grace period) never races a running Put.
func (b *DirBackend) CleanTemp(ctx context.Context, cutoff time.Time) (int, error) {
	n := 0
	err := fs.WalkDir(b.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return b.wrap("clean", p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		fi, err := d.Info()
		if err != nil || !fi.ModTime().Before(cutoff) {
			return nil
		}
		if err := b.root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return b.wrap("clean", p, err)
		}
		n++
		return nil
	})
	return n, err
}
