package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/cairn-backup/cairn/fusefs"
	"github.com/cairn-backup/cairn/pool"
)

func init() {
	register(&command{name: "mount", short: "mount a pool's snapshots read-only (FUSE)", run: runMount})
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (`cairn mount /mnt --pool P`), which package flag
// alone does not allow.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runMount(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mount", flag.ContinueOnError)
	poolLoc := fs.String("pool", "", "pool location: a directory or s3://… (required)")
	keyFile := fs.String("key-file", "", "key file of an encrypted pool")
	allowOther := fs.Bool("allow-other", false, "let other users see the mount (non-root needs user_allow_other in /etc/fuse.conf)")
	debug := fs.Bool("debug", false, "log every FUSE request")
	imagesLoc := fs.String("images", "", "image pool to show as <host>/<time>/images/<source>.img (default: DATA/images next to a DATA/pool directory)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: cairn mount MOUNTPOINT --pool P [--key-file F]\n\n"+
			"Mounts every snapshot read-only at MOUNTPOINT as /<host>/<snapshot>/<source>/…, with\n"+
			"/<host>/latest pointing at the newest. New snapshots appear without a remount.\n"+
			"Runs until interrupted (Ctrl-C, SIGTERM), then unmounts. A stale mount left\n"+
			"at MOUNTPOINT by a crash is cleared first.\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return errUsage
	}
	if len(pos) != 1 || *poolLoc == "" {
		fs.Usage()
		return errUsage
	}
	mountpoint := pos[0]
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	b, err := pool.OpenBackend(ctx, *poolLoc, pool.OpenBackendOptions{})
	if err != nil {
		return err
	}
	p, err := pool.Open(ctx, b, pool.OpenOptions{KeyFile: *keyFile})
	if err != nil {
		return fmt.Errorf("open pool %s: %w", pool.RedactLocation(*poolLoc), err)
	}
	if st, err := os.Stat(mountpoint); err == nil && !st.IsDir() {
		return fmt.Errorf("mount point %s: not a directory", mountpoint)
	}
	tree, err := imageTree(ctx, p, p.FS(ctx), *poolLoc, *imagesLoc, *keyFile) // cmd_image.go
	if err != nil {
		return err
	}
	srv, err := fusefs.Mount(ctx, mountpoint, tree, fusefs.Options{
		FsName:     "cairn:" + p.ID(),
		AllowOther: *allowOther,
		Logger:     log,
		Debug:      *debug,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "cairn mount: pool %s mounted read-only at %s; Ctrl-C or SIGTERM unmounts\n", p.ID(), mountpoint)
	select {
	case <-ctx.Done():
		return srv.Unmount()
	case <-srv.Done():
		// Unmounted from outside (umount, fusermount3 -u).
		return nil
	}
}
