package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// tool is one backup program under test. Commands it returns are run and
// measured by the caller; init is not timed.
type tool interface {
	Name() string
	// Version is one line for the report.
	Version(ctx context.Context) string
	// Init creates an empty repository at repo; state (caches, config)
	// goes under state, which is fresh for every run.
	Init(ctx context.Context, repo, state string) error
	// Backup returns the command that snapshots src into repo. label is
	// unique within one repository.
	Backup(ctx context.Context, repo, state, src, label string) *exec.Cmd
	// Restore returns the command that restores the latest snapshot (the
	// one labelled label) into dst, and where the source's root appears
	// under dst.
	Restore(ctx context.Context, repo, state, dst, src, label string) (*exec.Cmd, string)
}

func firstLine(ctx context.Context, name string, args ...string) string {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s: %v", name, err)
	}
	s, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return s
}

func runQuiet(ctx context.Context, cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", shown(cmd), err, out)
	}
	return nil
}

// --- restic ---------------------------------------------------------------

type restic struct{}

func (restic) Name() string { return "restic" }

func (restic) Version(ctx context.Context) string { return firstLine(ctx, "restic", "version") }

func (restic) cmd(ctx context.Context, repo, state string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "restic", append([]string{"-r", repo}, args...)...)
	c.Env = append(os.Environ(), "RESTIC_PASSWORD=bench", "RESTIC_CACHE_DIR="+filepath.Join(state, "cache"))
	return c
}

func (r restic) Init(ctx context.Context, repo, state string) error {
	// Repository format 2 is what enables compression (default "auto").
	return runQuiet(ctx, r.cmd(ctx, repo, state, "init", "--repository-version", "2"))
}

func (r restic) Backup(ctx context.Context, repo, state, src, label string) *exec.Cmd {
	return r.cmd(ctx, repo, state, "backup", "--host", "bench", "--tag", label, src)
}

func (r restic) Restore(ctx context.Context, repo, state, dst, src, label string) (*exec.Cmd, string) {
	return r.cmd(ctx, repo, state, "restore", "latest", "--target", dst), filepath.Join(dst, src)
}

// --- borg -----------------------------------------------------------------

// borgCompression is the borg setting used: "auto" probes each chunk with lz4
// and compresses with zstd level 3 only where that pays, the closest match
// to restic's "auto" (zstd, skipping incompressible data).
const borgCompression = "auto,zstd,3"

type borg struct{}

func (borg) Name() string { return "borg" }

func (borg) Version(ctx context.Context) string { return firstLine(ctx, "borg", "--version") }

func (borg) cmd(ctx context.Context, state string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "borg", args...)
	c.Env = append(os.Environ(), "BORG_BASE_DIR="+state,
		"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes", "BORG_RELOCATED_REPO_ACCESS_IS_OK=yes")
	return c
}

func (b borg) Init(ctx context.Context, repo, state string) error {
	// Unencrypted, like a default Cairn pool.
	return runQuiet(ctx, b.cmd(ctx, state, "init", "-e", "none", repo))
}

func (b borg) Backup(ctx context.Context, repo, state, src, label string) *exec.Cmd {
	return b.cmd(ctx, state, "create", "--compression", borgCompression, repo+"::"+label, src)
}

func (b borg) Restore(ctx context.Context, repo, state, dst, src, label string) (*exec.Cmd, string) {
	c := b.cmd(ctx, state, "extract", repo+"::"+label)
	c.Dir = dst
	return c, filepath.Join(dst, strings.TrimPrefix(src, "/"))
}

// --- rsync (floor; no repository, "backup" is a copy) --------------------

type rsync struct{}

func (rsync) Name() string { return "rsync" }

func (rsync) Version(ctx context.Context) string { return firstLine(ctx, "rsync", "--version") }

func (rsync) Init(ctx context.Context, repo, state string) error { return os.MkdirAll(repo, 0o755) }

func (rsync) Backup(ctx context.Context, repo, state, src, label string) *exec.Cmd {
	return exec.CommandContext(ctx, "rsync", "-a", src+"/", repo+"/")
}

func (rsync) Restore(ctx context.Context, repo, state, dst, src, label string) (*exec.Cmd, string) {
	return exec.CommandContext(ctx, "rsync", "-a", repo+"/", dst+"/"), dst
}

// --- cairn ----------------------------------------------------------------

type cairn struct{ bin string }

func (cairn) Name() string { return "cairn" }

func (c cairn) Version(ctx context.Context) string { return firstLine(ctx, c.bin, "version") }

func (c cairn) Init(ctx context.Context, repo, state string) error {
	return runQuiet(ctx, exec.CommandContext(ctx, c.bin, "pool", "init", "--pool", repo))
}

func (c cairn) Backup(ctx context.Context, repo, state, src, label string) *exec.Cmd {
	return exec.CommandContext(ctx, c.bin, "snapshot", "create", "--pool", repo, "--host", "bench", src)
}

func (c cairn) Restore(ctx context.Context, repo, state, dst, src, label string) (*exec.Cmd, string) {
	return exec.CommandContext(ctx, c.bin, "restore", "latest", "--pool", repo, "--to", dst), dst
}
