package fusefs

import (
	"os"

	"golang.org/x/sys/unix"
)

func fadvise(f *os.File, advice int) error {
	return unix.Fadvise(int(f.Fd()), 0, 0, advice)
}
