package appliance

import (
	"context"
	"fmt"
	"os"

	"github.com/cairn-backup/cairn/fusefs"
)

// startMount mounts the whole restore tree (what an admin sees) read-only
// at cfg.Mount, clearing a stale mount a crash left there first. New
// snapshots appear without a remount (fusefs re-reads the snapshot list).
// The mount ends when ctx is done; stopMount waits for the unmount.
func (s *Server) startMount(ctx context.Context) error {
	if s.cfg.Mount == "" {
		return nil
	}
	if err := os.MkdirAll(s.cfg.Mount, 0o755); err != nil {
		if cerr := fusefs.ClearStale(s.cfg.Mount); cerr != nil {
			return fmt.Errorf("mount point %s: %w", s.cfg.Mount, err)
		}
	}
	m, err := fusefs.Mount(ctx, s.cfg.Mount, s.fullTree(context.WithoutCancel(ctx)), fusefs.Options{
		FsName: "cairn:" + s.pool.ID(), Logger: s.log,
	})
	if err != nil {
		return fmt.Errorf("restore tree mount: %w", err)
	}
	s.mount = m
	s.log.Info("restore tree mounted read-only", "mountpoint", s.cfg.Mount)
	return nil
}

// stopMount unmounts the restore tree, if mounted (lazily when busy).
func (s *Server) stopMount() {
	if s.mount == nil {
		return
	}
	if err := s.mount.Unmount(); err != nil {
		s.log.Error("unmount restore tree", "mountpoint", s.cfg.Mount, "err", err)
	}
}
