package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/pool"
)

// Direct image verbs: `cairn image ls|download|restore --pool P` read the
// image snapshots of a pool with no appliance and no catalog — the
// appliance's own DATA/pool (images at DATA/images), or a replica (its
// image pool nested at <replica>/images, replicate_images.go in the
// appliance). An image snapshot is a placeholder snapshot of the file
// pool naming its image version (images/FORMAT.md §6).

// imageDirectRow is one line of `image ls --pool P --json`.
type imageDirectRow struct {
	Snapshot string    `json:"snapshot"`
	Host     string    `json:"host"`
	Source   string    `json:"source"`
	Time     time.Time `json:"time"`
	Size     int64     `json:"size"`
	Image    string    `json:"image"`   // name/version in the image pool
	Present  bool      `json:"present"` // the version is in the image pool
}

type imageDirectFlags struct {
	pf            *poolFlags
	images        string
	imagesKeyFile string
}

func addImageDirectFlags(fs *flag.FlagSet) *imageDirectFlags {
	f := &imageDirectFlags{pf: addPoolFlags(fs)}
	fs.StringVar(&f.images, "images", "", "image pool (default: <pool>/images of a replica, or DATA/images next to a DATA/pool directory)")
	fs.StringVar(&f.imagesKeyFile, "images-key-file", "", "key file of an encrypted image pool (the appliance's DATA/images.key; default $CAIRN_IMAGES_KEY_FILE)")
	return f
}

// open opens the pool and its image pool (an error when there is none).
func (f *imageDirectFlags) open(ctx context.Context) (*pool.Pool, *images.Store, error) {
	p, err := f.pf.open(ctx)
	if err != nil {
		return nil, nil, err
	}
	if f.imagesKeyFile != "" {
		os.Setenv("CAIRN_IMAGES_KEY_FILE", f.imagesKeyFile)
	}
	st, err := directImages(ctx, f.pf.location(), f.images, f.pf.key())
	if err != nil {
		return nil, nil, err
	}
	if st == nil {
		return nil, nil, fmt.Errorf("no image pool found for pool %s (looked at %s/images and a sibling images directory); give --images LOCATION",
			pool.RedactLocation(f.pf.location()), pool.RedactLocation(f.pf.location()))
	}
	return p, st, nil
}

func runImageDirect(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "ls":
		return imageLsDirect(ctx, args[1:])
	case "download":
		return imageWriteDirect(ctx, "download", args[1:])
	case "restore":
		return imageWriteDirect(ctx, "restore", args[1:])
	}
	return fmt.Errorf("image %s: with --pool, want ls, download or restore", args[0])
}

func imageRows(ctx context.Context, p *pool.Pool, st *images.Store, host string) ([]imageDirectRow, error) {
	have, err := images.ReplicaVersions(ctx, st.Pool().Backend())
	if err != nil {
		return nil, err
	}
	var rows []imageDirectRow
	err = p.Snapshots(ctx, func(m *pool.Manifest) error {
		name, id, ok := images.Placeholder(m)
		if !ok || host != "" && m.Host != host {
			return nil
		}
		var size int64
		fmt.Sscan(m.Labels[images.LabelSize], &size)
		rows = append(rows, imageDirectRow{Snapshot: m.ID, Host: m.Host, Source: m.Source, Time: m.Start, Size: size,
			Image: name + "/" + id, Present: have[name+"/"+id]})
		return nil
	})
	sort.Slice(rows, func(i, j int) bool { return rows[i].Time.Before(rows[j].Time) })
	return rows, err
}

// imageLsDirect is `cairn image ls --pool P [HOST] [--json]`.
func imageLsDirect(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image ls", flag.ContinueOnError)
	f := addImageDirectFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("image ls: at most one host")
	}
	p, st, err := f.open(ctx)
	if err != nil {
		return err
	}
	host := ""
	if len(pos) == 1 {
		host = pos[0]
	}
	rows, err := imageRows(ctx, p, st, host)
	if err != nil {
		return err
	}
	if *asJSON {
		if rows == nil {
			rows = []imageDirectRow{}
		}
		return printJSON(rows)
	}
	var out [][]string
	for _, r := range rows {
		state := "ok"
		if !r.Present {
			state = "MISSING"
		}
		out = append(out, []string{r.Snapshot, r.Host, r.Source, apTime(r.Time), apBytes(r.Size), state})
	}
	apTable([]string{"SNAPSHOT", "HOST", "SOURCE", "TIME", "SIZE", "IMAGE"}, out)
	return nil
}

// imageWriteDirect is `cairn image download SNAPSHOT -o FILE --pool P`
// (a new file) and `cairn image restore SNAPSHOT --to PATH --pool P` (a
// file, replaced, or a block device at least as large as the image).
// Both print the SHA-256 of what was written.
func imageWriteDirect(ctx context.Context, verb string, args []string) error {
	fs := flag.NewFlagSet("image "+verb, flag.ContinueOnError)
	f := addImageDirectFlags(fs)
	var out string
	if verb == "download" {
		fs.StringVar(&out, "o", "", "write to FILE (a new file; \"-\": stdout)")
	} else {
		fs.StringVar(&out, "to", "", "write to PATH (a file, replaced, or a block device)")
	}
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || out == "" {
		return fmt.Errorf("image %s: want one snapshot ID and %s", verb, map[string]string{"download": "-o FILE", "restore": "--to PATH"}[verb])
	}
	p, st, err := f.open(ctx)
	if err != nil {
		return err
	}
	m, err := p.Snapshot(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("image %s: %w", verb, err)
	}
	name, id, ok := images.Placeholder(m)
	if !ok {
		return fmt.Errorf("image %s: snapshot %s is not an image snapshot", verb, pos[0])
	}
	im, err := st.OpenVersion(ctx, name, id)
	if err != nil {
		return fmt.Errorf("image %s: snapshot %s: %w", verb, pos[0], err)
	}
	defer im.Close()
	var w io.Writer = os.Stdout
	var file *os.File
	device := false
	if out != "-" {
		flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
		if verb == "restore" {
			flags = os.O_WRONLY | os.O_CREATE
			if fi, err := os.Stat(out); err == nil && fi.Mode()&os.ModeDevice != 0 {
				device = true
			} else if err == nil {
				flags |= os.O_TRUNC
			}
		}
		if file, err = os.OpenFile(out, flags, 0o600); err != nil {
			return fmt.Errorf("image %s: %w", verb, err)
		}
		w = file
	}
	h := sha256.New()
	src := io.TeeReader(io.NewSectionReader(im, 0, im.Size()), h)
	var n int64
	if device {
		n, err = io.Copy(file, src)
	} else {
		n, err = copySparse(w, file, src, true)
	}
	if err == nil && file != nil {
		err = file.Close()
	}
	if err != nil {
		if file != nil {
			file.Close()
			if verb == "download" {
				os.Remove(out)
			}
		}
		return fmt.Errorf("image %s %s: %w", verb, pos[0], err)
	}
	if n != im.Size() {
		return fmt.Errorf("image %s %s: wrote %d of %d bytes", verb, pos[0], n, im.Size())
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if *asJSON {
		return printJSON(map[string]any{"snapshot": m.ID, "image": name + "/" + id, "size": n, "sha256": sum, "path": out})
	}
	if out != "-" {
		fmt.Fprintf(os.Stderr, "wrote %s (%s) from snapshot %s\n", out, apBytes(n), m.ID)
		fmt.Printf("%s  %s\n", sum, out)
	}
	return nil
}

// nestedImages returns the location of the image pool nested in a
// replica at poolLoc (<dir>/images, or s3://…/prefix/images), or "".
func nestedImages(ctx context.Context, poolLoc string) string {
	loc := filepath.Join(poolLoc, "images")
	if strings.Contains(poolLoc, "://") {
		u, err := url.Parse(poolLoc)
		if err != nil {
			return ""
		}
		u.Path = strings.TrimRight(u.Path, "/") + "/images"
		loc = u.String()
	}
	b, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{})
	if err != nil {
		return ""
	}
	defer func() {
		if c, ok := b.(io.Closer); ok {
			c.Close()
		}
	}()
	if _, err := b.Stat(ctx, images.MarkerName); err != nil {
		return ""
	}
	return loc
}
