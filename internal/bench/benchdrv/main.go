// Command benchdrv is the bench's Cairn driver for what the cairn CLI does
// not offer without a running appliance: a pull from any puller method
// (sftp, smb, rsync, ftp, postgres…) straight into a pool, with the same
// pool.Writer, incremental basis and pullers as `cairn snapshot create`
// and the appliance's backup job; a FUSE mount of a pool (as `cairn
// mount`); Cairn's WebDAV handler on a pool; and a plain x/net/webdav
// server on a directory, the WebDAV peer. It is built by the bench (go
// build) and measured as one child process.
//
//	benchdrv init --pool P
//	benchdrv pull --pool P --host H --source S --method M [--path P] [--opt k=v]... [--secret k=v]... [--cpuprofile F] [--memprofile F]
//	benchdrv mount --pool P MOUNTPOINT
//	benchdrv dav --pool P --addr 127.0.0.1:PORT
//	benchdrv plaindav --dir D --addr 127.0.0.1:PORT
//	benchdrv davget --url http://…/dav/… --dst DIR [--workers N]
//	benchdrv randread --file F [--span BYTES] [--block BYTES] [--seed N]
//
// Secrets given as k=@file are read from the file.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/webdav"

	cwebdav "github.com/cairn-backup/cairn/appliance/webdav"
	"github.com/cairn-backup/cairn/fusefs"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	_ "github.com/cairn-backup/cairn/pullers/dbdump"
	_ "github.com/cairn-backup/cairn/pullers/ftp"
	_ "github.com/cairn-backup/cairn/pullers/local"
	_ "github.com/cairn-backup/cairn/pullers/rsync"
	_ "github.com/cairn-backup/cairn/pullers/sftp"
	_ "github.com/cairn-backup/cairn/pullers/smb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchdrv pull|mount|dav|plaindav …")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "init":
		err = initPool(ctx, os.Args[2:])
	case "pull":
		err = pull(ctx, os.Args[2:])
	case "mount":
		err = mount(ctx, os.Args[2:])
	case "dav":
		err = dav(ctx, os.Args[2:])
	case "davget":
		err = davGet(ctx, os.Args[2:])
	case "plaindav":
		err = plainDAV(ctx, os.Args[2:])
	case "randread":
		err = randRead(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchdrv:", err)
		os.Exit(1)
	}
}

type kvList map[string]string

func (k kvList) String() string { return "" }
func (k kvList) Set(v string) error {
	key, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("%q: want key=value", v)
	}
	if f, ok := strings.CutPrefix(val, "@"); ok {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		val = string(b)
	}
	k[key] = val
	return nil
}

func openPool(ctx context.Context, loc string) (*pool.Pool, error) {
	b, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{})
	if err != nil {
		return nil, fmt.Errorf("open pool %s: %w", loc, err)
	}
	return pool.Open(ctx, b, pool.OpenOptions{})
}

func initPool(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	loc := fs.String("pool", "", "pool directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := pool.OpenBackend(ctx, *loc, pool.OpenBackendOptions{Create: true})
	if err != nil {
		return err
	}
	_, err = pool.Init(ctx, b, pool.InitOptions{})
	return err
}

func pull(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	loc := fs.String("pool", "", "pool directory")
	host := fs.String("host", "bench", "host name")
	source := fs.String("source", "", "source name")
	method := fs.String("method", "", "puller method")
	srcPath := fs.String("path", "", "Source.Path")
	cpuProf := fs.String("cpuprofile", "", "write a CPU profile")
	memProf := fs.String("memprofile", "", "write a heap profile (in-use at the peak-ish end of the pull)")
	peakProf := fs.String("peakheap", "", "write a heap profile whenever the heap reaches a new high (at most every 500 ms): the profile of the peak")
	statsFile := fs.String("stats", "", "write the snapshot's files, bytes and new bytes as JSON")
	opts, secret := kvList{}, kvList{}
	fs.Var(opts, "opt", "Source.Options k=v (repeatable)")
	fs.Var(secret, "secret", "Source.Secret k=v or k=@file (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *loc == "" || *method == "" || *source == "" {
		return errors.New("pull: --pool, --method and --source are required")
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if *peakProf != "" {
		stopWatch := watchPeak(*peakProf)
		defer stopWatch()
	}
	p, err := openPool(ctx, *loc)
	if err != nil {
		return err
	}
	var prevM *pool.Manifest
	err = p.Snapshots(ctx, func(m *pool.Manifest) error {
		if m.Host == *host && m.Source == *source && (prevM == nil || m.Start.After(prevM.Start) || (m.Start.Equal(prevM.Start) && m.ID > prevM.ID)) {
			prevM = m
		}
		return nil
	})
	if err != nil {
		return err
	}
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: *host, Source: *source})
	if err != nil {
		return err
	}
	job := &pullers.Job{Host: *host, Sink: w,
		Source: pullers.Source{Method: *method, Name: *source, Path: *srcPath, Options: opts, Secret: secret}}
	if prevM != nil {
		job.Previous = p.NewTreeLookup(prevM.Root)
	}
	pl, err := pullers.Get(*method)
	if err != nil {
		w.Abort()
		return err
	}
	if err := pl.Pull(ctx, job); err != nil {
		w.Abort()
		return fmt.Errorf("pull failed: %w", err)
	}
	if *memProf != "" {
		f, err := os.Create(*memProf)
		if err != nil {
			return err
		}
		runtime.GC()
		if err := pprof.WriteHeapProfile(f); err != nil {
			return err
		}
		f.Close()
	}
	m, err := w.Finish(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "benchdrv: snapshot %s: %d files, %d bytes (%d new), %d errors\n", m.ID, m.Files, m.Bytes, m.BytesNew, m.ErrorCount)
	if *statsFile != "" {
		data, _ := json.Marshal(map[string]int64{"files": m.Files, "bytes": m.Bytes, "bytes_new": m.BytesNew})
		if err := os.WriteFile(*statsFile, data, 0o644); err != nil {
			return err
		}
	}
	if m.ErrorCount > 0 {
		return fmt.Errorf("snapshot %s is partial: %d errors", m.ID, m.ErrorCount)
	}
	return nil
}

func mount(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("mount", flag.ContinueOnError)
	loc := fs.String("pool", "", "pool directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("mount: want MOUNTPOINT")
	}
	p, err := openPool(ctx, *loc)
	if err != nil {
		return err
	}
	srv, err := fusefs.Mount(ctx, fs.Arg(0), p.FS(ctx), fusefs.Options{FsName: "cairn:" + p.ID(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		return err
	}
	fmt.Println("mounted")
	select {
	case <-ctx.Done():
		return srv.Unmount()
	case <-srv.Done():
		return nil
	}
}

func serve(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h}
	go func() { <-ctx.Done(); srv.Close() }()
	fmt.Println("listening")
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func dav(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dav", flag.ContinueOnError)
	loc := fs.String("pool", "", "pool directory")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := openPool(ctx, *loc)
	if err != nil {
		return err
	}
	return serve(ctx, *addr, cwebdav.NewHandler(p.FS(ctx), "/dav"))
}

func plainDAV(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("plaindav", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to share")
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return serve(ctx, *addr, &webdav.Handler{Prefix: "/dav", FileSystem: webdav.Dir(*dir), LockSystem: webdav.NewMemLS()})
}

// watchPeak samples the heap every 20 ms and writes a heap profile to file
// when it grows past the last high by 5%, at most every 500 ms.
func watchPeak(file string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var high uint64
		var last time.Time
		var ms runtime.MemStats
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintf(os.Stderr, "benchdrv: peak heap in use %d MiB\n", high>>20)
				return
			case <-t.C:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > high+high/20 && time.Since(last) > 500*time.Millisecond {
				high = ms.HeapInuse
				last = time.Now()
				if f, err := os.Create(file); err == nil {
					pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
			high = max(high, ms.HeapInuse)
		}
	}()
	return func() { close(done); <-finished }
}
