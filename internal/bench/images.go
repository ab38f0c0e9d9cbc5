package main

// The block-image benchmark (issue 9): a sparse image of -image-size
// bytes (default 4 GiB) holding a quarter of that as data, then version 2
// with 2% of its 4 MiB blocks rewritten. For v1 and v2: wall time, bytes
// stored after each, and for Cairn's SSH source (b) the bytes over the
// wire; Cairn's SFTP source (a) re-reads every block (the "full re-read"
// the (b) target compares with). Peers: restic and borg backing up the
// image file (both read it whole each time).

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/images/sshsrc"
	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
)

var (
	imageSize    = flag.Int64("image-size", 4<<30, "size of the block-image benchmark's sparse image (a quarter of it is data); e.g. 268435456 for a smoke run")
	imageChanged = flag.Float64("image-changed", 2, "percent of the image's 4 MiB blocks rewritten for version 2")
)

// imagesRecord is the image benchmark's part of the results JSON.
type imagesRecord struct {
	Size          int64 // image size
	DataBytes     int64 // bytes of data in v1 (the rest is holes)
	Blocks        int64
	ChangedBlocks int64 // rewritten for v2
	Rows          []imageRow
	Err           string `json:",omitempty"`
}

// imageRow is one tool's backup of one version.
type imageRow struct {
	Tool    string // "cairn ssh (b)", "cairn sftp (a)", "restic", "borg"
	Version int    // 1 or 2
	Wall    time.Duration
	Stored  int64  // repository bytes (apparent) after this version
	Growth  int64  // Stored minus after v1 (v2 only)
	Wire    int64  `json:",omitempty"` // bytes received over the network
	Err     string `json:",omitempty"`
}

// runImages runs the image benchmark once, into b.rec.Images. A failing
// tool is recorded, not fatal.
func (b *bench) runImages(ctx context.Context) error {
	if !b.want("images") {
		return nil
	}
	rec := &imagesRecord{Size: *imageSize}
	b.rec.Images = rec
	if err := b.imagesBench(ctx, rec); err != nil {
		rec.Err = err.Error()
		b.log.Error("image benchmark failed", "err", err)
	}
	return ctx.Err()
}

func (b *bench) imagesBench(ctx context.Context, rec *imagesRecord) error {
	if rec.Size < images.BlockSize || rec.Size%images.BlockSize != 0 {
		return fmt.Errorf("-image-size %d: want a positive multiple of 4 MiB", rec.Size)
	}
	dir := filepath.Join(b.o.work, "images")
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "src"), 0o755); err != nil {
		return err
	}
	img := filepath.Join(dir, "src", "disk.img")
	rec.Blocks = rec.Size / images.BlockSize
	// v1: every 4th block is data (spread like a filesystem's), random
	// bytes with a compressible half; v2: a seeded 2% of all blocks
	// rewritten.
	var data []int64
	for i := int64(0); i < rec.Blocks; i += 4 {
		data = append(data, i)
	}
	rec.DataBytes = int64(len(data)) * images.BlockSize
	if err := writeImageBlocks(img, rec.Size, data, 1); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(9, 9))
	n := max(1, int64(float64(rec.Blocks)**imageChanged/100))
	changed := r.Perm(int(rec.Blocks))[:n]
	var ch []int64
	for _, i := range changed {
		ch = append(ch, int64(i))
	}
	slices.Sort(ch)
	rec.ChangedBlocks = n

	tb, err := newBenchTB(b.log, filepath.Join(b.o.work, "testenv-images"))
	if err != nil {
		return err
	}
	defer tb.close()
	srv, err := startServer(tb, "sshd", testenv.SSHD)
	if err != nil {
		return err
	}

	type runner struct {
		name string
		run  func(ctx context.Context, version int) (imageRow, error)
	}
	runners := []runner{
		{"cairn ssh (b)", b.cairnImage(srv, dir, img, false)},
		{"cairn sftp (a)", b.cairnImage(srv, dir, img, true)},
	}
	for _, t := range b.tools {
		switch t.Name() {
		case "restic", "borg":
			runners = append(runners, runner{t.Name(), b.peerImage(t, dir, img)})
		}
	}
	for version := 1; version <= 2; version++ {
		if version == 2 {
			if err := writeImageBlocks(img, rec.Size, ch, 2); err != nil {
				return err
			}
		}
		for _, rn := range runners {
			if err := ctx.Err(); err != nil {
				return err
			}
			if _, _, err := warm(filepath.Dir(img)); err != nil {
				return err
			}
			row, err := rn.run(ctx, version)
			row.Tool, row.Version = rn.name, version
			if err != nil {
				row.Err = err.Error()
			}
			if version == 2 {
				for _, p := range rec.Rows {
					if p.Tool == rn.name && p.Version == 1 {
						row.Growth = row.Stored - p.Stored
					}
				}
			}
			b.log.Info("image bench", "tool", rn.name, "version", version, "wall", row.Wall.Round(time.Millisecond),
				"stored_mib", row.Stored>>20, "wire_mib", row.Wire>>20, "err", row.Err)
			rec.Rows = append(rec.Rows, row)
		}
	}
	return nil
}

// writeImageBlocks writes blocks of the sparse image at path (size
// bytes), creating it when missing; the content depends on seed.
func writeImageBlocks(path string, size int64, blocks []int64, seed uint64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, images.BlockSize)
	for _, i := range blocks {
		r := rand.New(rand.NewPCG(seed, uint64(i)))
		for k := 0; k < len(buf)/2; k += 8 {
			v := r.Uint64()
			for j := range 8 {
				buf[k+j] = byte(v >> (8 * j))
			}
		}
		line := fmt.Sprintf("block %d seed %d: a compressible half, like the text in a disk image\n", i, seed)
		for k := len(buf) / 2; k < len(buf); k += len(line) {
			copy(buf[k:], line)
		}
		if _, err := f.WriteAt(buf, i*images.BlockSize); err != nil {
			return err
		}
	}
	return f.Close()
}

type wireConn struct {
	net.Conn
	n *atomic.Int64
}

func (c wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// cairnImage backs the image up into an image pool in dir: over SSH with
// differential transfer (b), or over SFTP reading every block (a). The
// pull runs in this process; its wall time is the pull's.
func (b *bench) cairnImage(srv *testenv.SSHServer, dir, img string, viaSFTP bool) func(context.Context, int) (imageRow, error) {
	name := "ssh"
	if viaSFTP {
		name = "sftp"
	}
	poolDir := filepath.Join(dir, "pool-cairn-"+name)
	var store *images.Store
	var prev *images.Manifest
	return func(ctx context.Context, version int) (imageRow, error) {
		var row imageRow
		if store == nil {
			be, err := pool.CreateDirBackend(poolDir)
			if err != nil {
				return row, err
			}
			if store, err = images.Init(ctx, be, pool.InitOptions{}, nil); err != nil {
				return row, err
			}
		}
		var wire atomic.Int64
		raw, err := net.Dial("tcp", srv.Addr)
		if err != nil {
			return row, err
		}
		start := time.Now()
		sc, chans, reqs, err := ssh.NewClientConn(wireConn{raw, &wire}, srv.Addr, srv.ClientConfig())
		if err != nil {
			raw.Close()
			return row, err
		}
		c := ssh.NewClient(sc, chans, reqs)
		defer c.Close()
		vo := images.VersionOptions{Host: "bench", Prev: prev, HostHash: images.HashSHA256}
		var m *images.Manifest
		if viaSFTP {
			var cl *sftp.Client
			if cl, err = sftp.NewClient(c, sftp.UseConcurrentReads(true)); err != nil {
				return row, err
			}
			defer cl.Close()
			var f *sftp.File
			if f, err = cl.Open(img); err != nil {
				return row, err
			}
			defer f.Close()
			m, _, err = store.IngestReaderAt(ctx, "disk", f, *imageSize, images.IngestOptions{VersionOptions: vo})
		} else {
			m, _, err = sshsrc.Pull(ctx, c, store, "disk", sshsrc.Options{Path: img, Version: vo})
		}
		row.Wall, row.Wire = time.Since(start), wire.Load()
		if err != nil {
			return row, err
		}
		prev = m
		row.Stored, _, _, err = du(poolDir)
		return row, err
	}
}

// peerImage backs the image file up with restic or borg (the file as the
// source: both read it whole), timed like the other scenarios.
func (b *bench) peerImage(t tool, dir, img string) func(context.Context, int) (imageRow, error) {
	repo := filepath.Join(dir, "repo-"+t.Name())
	state := filepath.Join(dir, "state-"+t.Name())
	logPath := filepath.Join(b.rec.Logs, "images-"+t.Name()+".log")
	return func(ctx context.Context, version int) (imageRow, error) {
		var row imageRow
		if version == 1 {
			if err := os.MkdirAll(state, 0o755); err != nil {
				return row, err
			}
			if err := t.Init(ctx, repo, state); err != nil {
				return row, err
			}
		}
		s, err := b.measureCmd(ctx, t.Backup(ctx, repo, state, img, fmt.Sprintf("image-v%d", version)), logPath)
		row.Wall = s.Wall
		if err != nil {
			return row, err
		}
		row.Stored, _, _, err = du(repo)
		return row, err
	}
}

// writeImages writes the image benchmark's table and the issue-9 targets.
func (b *bench) writeImages(p func(string, ...any)) {
	rec := b.rec.Images
	if rec == nil {
		return
	}
	p("## Block images (issue 9)\n\n")
	p("A sparse image of %s with %s of data (every 4th 4 MiB block; half random, half text), then version 2 with %d of its %d blocks (%.1f%%) rewritten. ",
		mib(rec.Size), mib(rec.DataBytes), rec.ChangedBlocks, rec.Blocks, 100*float64(rec.ChangedBlocks)/float64(max(1, rec.Blocks)))
	p("Cairn pulls from a local sshd (testenv) in-process: source (b) over SSH hashes the image on the host (`split` + `sha256sum`) and fetches only blocks whose hash changed; source (a) over SFTP reads every block and stores only changed ones. restic (`backup FILE`) and borg (`create … FILE`) read the file whole, locally. One run.\n\n")
	if rec.Err != "" {
		p("**The image benchmark failed:** %s\n\n", rec.Err)
	}
	p("| Tool | Version | Wall s | Stored MiB | Δ stored MiB | Over the wire MiB | Error |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rec.Rows {
		gro, wire := "–", "–"
		if r.Version == 2 {
			gro = fmt.Sprintf("%.1f", float64(r.Growth)/(1<<20))
		}
		if r.Wire > 0 {
			wire = fmt.Sprintf("%.1f", float64(r.Wire)/(1<<20))
		}
		p("| %s | v%d | %.2f | %.1f | %s | %s | %s |\n", r.Tool, r.Version, r.Wall.Seconds(), float64(r.Stored)/(1<<20), gro, wire, r.Err)
	}
	row := func(tool string, v int) (imageRow, bool) {
		for _, r := range rec.Rows {
			if r.Tool == tool && r.Version == v && r.Err == "" {
				return r, true
			}
		}
		return imageRow{}, false
	}
	p("\nTargets:\n\n")
	if c, ok := row("cairn ssh (b)", 2); ok {
		if rs, ok := row("restic", 2); ok && rs.Growth > 0 {
			r := float64(c.Growth) / float64(rs.Growth)
			p("- Stored growth from v2 ÷ restic's: %s%s (≤1.0)\n", fmtRatio(r, 1), verdict(r <= 1))
		} else {
			p("- Stored growth from v2 ÷ restic's: n/a (no restic run)\n")
		}
		r := float64(c.Wire) / float64(max(1, rec.DataBytes))
		p("- Bytes over the wire for (b) on v2 ÷ the image's allocated size: %.3f%s (≤0.10)\n", r, verdict(r <= 0.10))
		if a, ok := row("cairn sftp (a)", 2); ok && a.Wall > 0 {
			r := c.Wall.Seconds() / a.Wall.Seconds()
			p("- v2 wall time over (b) ÷ a full re-read (source (a), every block over SFTP): %s%s (≤0.5)\n", fmtRatio(r, 0.5), verdict(r <= 0.5))
		}
	} else {
		p("- n/a: source (b) did not complete v2\n")
	}
	p("\n")
}
