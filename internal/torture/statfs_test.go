package torture

import (
	"testing"

	"golang.org/x/sys/unix"
)

type syscallStatfs struct{ st unix.Statfs_t }

func (s *syscallStatfs) avail() int64 { return int64(s.st.Bavail) * int64(s.st.Bsize) }

func statfs(t testing.TB, path string, s *syscallStatfs) {
	t.Helper()
	if err := unix.Statfs(path, &s.st); err != nil {
		t.Fatal(err)
	}
}
