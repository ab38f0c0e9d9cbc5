package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// benchTB lets the bench start testenv's servers outside `go test`. Fatal
// calls panic with tbFatal, which startServer turns into an error; Cleanup
// functions run at close. Methods testenv does not call are left to the
// embedded nil TB (they would panic).
type benchTB struct {
	testing.TB
	log      *slog.Logger
	dir      string
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

type tbFatal struct{ err error }

func newBenchTB(log *slog.Logger, dir string) (*benchTB, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return &benchTB{log: log, dir: dir}, nil
}

func (t *benchTB) Helper()      {}
func (t *benchTB) Name() string { return "bench" }
func (t *benchTB) Failed() bool { t.mu.Lock(); defer t.mu.Unlock(); return t.failed }
func (t *benchTB) Fatalf(format string, a ...any) {
	panic(tbFatal{fmt.Errorf(format, a...)})
}
func (t *benchTB) Fatal(a ...any)           { panic(tbFatal{errors.New(fmt.Sprint(a...))}) }
func (t *benchTB) Skip(a ...any)            { panic(tbFatal{errors.New("skipped: " + fmt.Sprint(a...))}) }
func (t *benchTB) Skipf(f string, a ...any) { panic(tbFatal{fmt.Errorf("skipped: "+f, a...)}) }
func (t *benchTB) Logf(f string, a ...any)  { t.log.Debug("testenv", "msg", fmt.Sprintf(f, a...)) }
func (t *benchTB) Log(a ...any)             { t.log.Debug("testenv", "msg", fmt.Sprint(a...)) }
func (t *benchTB) Errorf(f string, a ...any) {
	t.markFailed()
	t.log.Warn("testenv", "err", fmt.Sprintf(f, a...))
}
func (t *benchTB) Error(a ...any) { t.markFailed(); t.log.Warn("testenv", "err", fmt.Sprint(a...)) }
func (t *benchTB) markFailed()    { t.mu.Lock(); t.failed = true; t.mu.Unlock() }

func (t *benchTB) TempDir() string {
	d, err := os.MkdirTemp(t.dir, "tmp")
	if err != nil {
		t.Fatalf("bench: temp dir: %v", err)
	}
	return d
}

func (t *benchTB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

// close runs the cleanups, last first (stopping the servers), and removes
// the temp dirs.
func (t *benchTB) close() {
	t.mu.Lock()
	cs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.log.Warn("testenv cleanup failed", "err", r)
				}
			}()
			cs[i]()
		}()
	}
	// Never remove through a bind mount: that would delete the corpus.
	for _, m := range mountsUnder(t.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.log.Warn("unmount", "dir", m, "err", err)
		}
	}
	if left := mountsUnder(t.dir); len(left) > 0 {
		t.log.Error("mounts left under the testenv dir; not removing it", "dir", t.dir, "mounts", left)
		return
	}
	os.RemoveAll(t.dir)
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], "\\040", " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.Reverse(out)
	return out
}

// startServer calls a testenv constructor and turns its Fatal into an error.
func startServer[T any](t *benchTB, what string, f func(testing.TB) T) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			if tf, ok := r.(tbFatal); ok {
				err = fmt.Errorf("starting %s: %w", what, tf.err)
				return
			}
			panic(r)
		}
	}()
	return f(t), nil
}

// bindMount makes src visible at dst (a server's served directory) until
// the returned function unmounts it.
func bindMount(src, dst string) (func(), error) {
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind mount %s on %s: %w (the bench runs as root)", src, dst, err)
	}
	return func() {
		if err := syscall.Unmount(dst, syscall.MNT_DETACH); err != nil {
			slog.Warn("bench: unmount", "dir", dst, "err", err)
		}
	}, nil
}

// buildDriver builds internal/bench/benchdrv into the work dir.
func (b *bench) buildDriver(ctx context.Context) (string, error) {
	out := filepath.Join(b.o.work, "bin", "benchdrv")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./internal/bench/benchdrv")
	if err := runQuiet(ctx, cmd); err != nil {
		return "", fmt.Errorf("building the bench driver: %w", err)
	}
	return out, nil
}
