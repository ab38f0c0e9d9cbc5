package appliance

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked: another process holds the data dir.
type lockedError struct {
	dir    string
	holder string
}

func (e *lockedError) Error() string {
	h := strings.TrimSpace(e.holder)
	if h == "" {
		h = "another process (no holder recorded yet)"
	}
	return fmt.Sprintf("data dir %s is locked by %s: another cairn serve is using it", e.dir, h)
}

// dirLock is an exclusive flock on DATA/lock, held for the life of the
// process. The kernel drops it when the process dies, so a crash never
// leaves a stale lock; the file's text only names the holder.
type dirLock struct{ f *os.File }

func lockDataDir(dir string) (*dirLock, error) {
	path := dir + "/lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, &lockedError{dir: dir, holder: string(b)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	host, _ := os.Hostname()
	holder := fmt.Sprintf("pid %d on host %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(holder), 0)
	}
	return &dirLock{f: f}, nil
}

func (l *dirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	l.f.Truncate(0)
	unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
	l.f = nil
}
