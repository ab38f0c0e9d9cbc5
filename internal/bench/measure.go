package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sample is one measured command.
type sample struct {
	Wall   time.Duration
	CPU    time.Duration // user + sys, of the child and the children it waited for
	MaxRSS int64         // bytes
	// Stored is the repository (or copy) size after the command; zero for restores.
	Stored, StoredAlloc int64
	Growth              int64   // Stored minus the previous scenario's, same run
	Files               int64   // files in the repository after the step
	Others              float64 // CPU cores other processes used meanwhile, on average
	// ServerCPU and ServerRSS are the serving process's CPU time and peak
	// RSS during the command, for scenarios where a client (ls, tar, a
	// WebDAV client) reads from a Cairn or peer server (FUSE, WebDAV).
	ServerCPU time.Duration `json:",omitempty"`
	ServerRSS int64         `json:",omitempty"`
	// Received and Sent are the TCP payload bytes the client received from
	// and sent to the server, counted by the byte-counting proxy of the
	// pull scenarios (proxy.go); zero when not measured.
	Received int64 `json:",omitempty"`
	Sent     int64 `json:",omitempty"`
}

// timeBin is GNU time. The child's rusage cannot be taken from Go's own
// wait: Go starts children with vfork, and Linux carries the parent's peak
// RSS over into the child's ru_maxrss at exec. GNU time forks, so its child
// starts from time's own ≈2 MB.
const timeBin = "/usr/bin/time"

// measure runs cmd to completion under GNU time, logging its output to
// logPath.
func measure(ctx context.Context, cmd *exec.Cmd, logPath string) (sample, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return sample{}, err
	}
	defer lf.Close()
	ruFile := logPath + ".rusage"
	defer os.Remove(ruFile)
	w := exec.CommandContext(ctx, timeBin, append([]string{"-f", "%U %S %M", "-o", ruFile, cmd.Path}, cmd.Args[1:]...)...)
	w.Env, w.Dir = cmd.Env, cmd.Dir
	// On interrupt kill the whole command (time's child too), and don't
	// wait for a grandchild that still holds the output pipe.
	w.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w.Cancel = func() error { return syscall.Kill(-w.Process.Pid, syscall.SIGKILL) }
	w.WaitDelay = 5 * time.Second
	fmt.Fprintf(lf, "\n$ %s (dir %s)\n", shown(cmd), cmd.Dir)
	var tail tailBuf
	w.Stdout = io.MultiWriter(lf, &tail)
	w.Stderr = w.Stdout
	start := time.Now()
	err = w.Run()
	wall := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w\n%s", shown(cmd), err, tail.String())
	}
	s := sample{Wall: wall}
	b, err := os.ReadFile(ruFile)
	if err != nil {
		return s, fmt.Errorf("reading rusage of %s: %w", shown(cmd), err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var user, sys float64
	var kb int64
	if _, err := fmt.Sscanf(lines[len(lines)-1], "%f %f %d", &user, &sys, &kb); err != nil {
		return s, fmt.Errorf("parsing rusage %q of %s: %w", b, shown(cmd), err)
	}
	s.CPU = time.Duration((user + sys) * float64(time.Second))
	s.MaxRSS = kb * 1024
	return s, ctx.Err()
}

// shown is cmd's command line for logs and errors (which end up in
// results.json and BENCHMARKS.md) with its passwords masked: benchdrv's
// --secret k=v (a value given inline, not as @file) and smbclient's
// -U user%password.
func shown(cmd *exec.Cmd) string {
	args := slices.Clone(cmd.Args)
	for i := 1; i < len(args); i++ {
		switch args[i-1] {
		case "--secret":
			if k, v, ok := strings.Cut(args[i], "="); ok && !strings.HasPrefix(v, "@") {
				args[i] = k + "=***"
			}
		case "-U":
			if u, _, ok := strings.Cut(args[i], "%"); ok {
				args[i] = u + "%***"
			}
		}
	}
	return strings.Join(args, " ")
}

// tailBuf keeps the last 2 KiB written to it, for error messages.
type tailBuf struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuf) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2048 {
		t.b = append(t.b[:0], t.b[len(t.b)-2048:]...)
	}
	return len(p), nil
}

func (t *tailBuf) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}

// du returns the apparent and allocated bytes and the number of
// non-directories under root, counting hard links once.
func du(root string) (apparent, alloc, files int64, err error) {
	seen := map[[2]uint64]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if ok && st.Nlink > 1 && !d.IsDir() {
			k := [2]uint64{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		if !d.IsDir() {
			apparent += info.Size()
			files++
		}
		if ok {
			alloc += st.Blocks * 512
		}
		return nil
	})
	return apparent, alloc, files, err
}

// regularFiles lists the regular files under root, relative, in walk order.
func regularFiles(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	return out, err
}

// parallel calls fn for every item with one worker per CPU and returns the
// first error.
func parallel(items []string, fn func(string) error) error {
	work := make(chan string)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if err := fn(it); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	return first
}

// warm reads every file under root so it sits in the page cache.
func warm(root string) (files int, bytes int64, err error) {
	list, err := regularFiles(root)
	if err != nil {
		return 0, 0, err
	}
	var mu sync.Mutex
	err = parallel(list, func(rel string) error {
		f, err := os.Open(filepath.Join(root, rel))
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.Copy(io.Discard, f)
		mu.Lock()
		bytes += n
		mu.Unlock()
		return err
	})
	return len(list), bytes, err
}

// errMismatch is returned by compareTrees when the trees differ.
var errMismatch = errors.New("restored tree differs from the source")

// compareTrees checks that got holds exactly want's regular files with the
// same contents and modification times (to the second).
func compareTrees(want, got string) (int, error) {
	wl, err := regularFiles(want)
	if err != nil {
		return 0, err
	}
	gl, err := regularFiles(got)
	if err != nil {
		return 0, err
	}
	if len(wl) != len(gl) {
		return len(gl), fmt.Errorf("%w: %d files, want %d", errMismatch, len(gl), len(wl))
	}
	var mu sync.Mutex
	var bad []string
	err = parallel(wl, func(rel string) error {
		if !sameFile(filepath.Join(want, rel), filepath.Join(got, rel)) {
			mu.Lock()
			bad = append(bad, rel)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return len(gl), err
	}
	if len(bad) > 0 {
		return len(gl), fmt.Errorf("%w: %d files differ, e.g. %s", errMismatch, len(bad), bad[0])
	}
	return len(gl), nil
}

func sameFile(a, b string) bool {
	ia, err1 := os.Stat(a)
	ib, err2 := os.Stat(b)
	if err1 != nil || err2 != nil || ia.Size() != ib.Size() || ia.ModTime().Unix() != ib.ModTime().Unix() {
		return false
	}
	fa, err1 := os.Open(a)
	fb, err2 := os.Open(b)
	if err1 != nil || err2 != nil {
		return false
	}
	defer fa.Close()
	defer fb.Close()
	ba, bb := make([]byte, 256<<10), make([]byte, 256<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return ea == eb || (errors.Is(ea, io.ErrUnexpectedEOF) && errors.Is(eb, io.ErrUnexpectedEOF))
		}
	}
}
