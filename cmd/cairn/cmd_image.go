package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cairn-backup/cairn/appliance"
	"github.com/cairn-backup/cairn/images"
	"github.com/cairn-backup/cairn/pool"
)

func init() {
	register(&command{name: "image", short: "block images of the appliance (ls|download|restore)", run: runImageVerb})
}

func runImageVerb(ctx context.Context, args []string) error {
	if poolGiven(args) {
		return runImageDirect(ctx, args) // cmd_image_direct.go
	}
	return apSub(ctx, "image", args, map[string]func(context.Context, []string) error{
		"ls": imageLs, "download": imageDownload, "restore": imageRestore,
	}, []string{"ls", "download", "restore"})
}

// imageLs is `cairn image ls [HOST]`.
func imageLs(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("image ls", "image ls [HOST] [--json]")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("image ls: at most one host")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	q := ""
	if len(pos) == 1 {
		q = "?host=" + apEsc(pos[0])
	}
	var list []appliance.ImageBody
	if err := cl.do(ctx, "GET", "/api/v1/images"+q, nil, &list); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(list)
	}
	var rows [][]string
	for _, im := range list {
		rows = append(rows, []string{im.Snapshot, im.Host, im.Source, apTime(im.Time), apBytes(im.Size), apBytes(im.Stored), im.Path})
	}
	apTable([]string{"SNAPSHOT", "HOST", "SOURCE", "TIME", "SIZE", "STORED", "PATH"}, rows)
	return nil
}

// imageDownload is `cairn image download SNAPSHOT -o FILE [--format raw|tar|zip]`.
func imageDownload(ctx context.Context, args []string) error {
	var c apConn
	var out, format string
	fs := apFlagSet("image download", "image download SNAPSHOT -o FILE [--format raw|tar|zip]")
	c.register(fs)
	fs.StringVar(&out, "o", "", "write to FILE (\"-\": stdout)")
	fs.StringVar(&format, "format", "raw", "raw, tar or zip")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || out == "" {
		return fmt.Errorf("image download: want one snapshot ID and -o FILE")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", cl.base+"/api/v1/snapshots/"+apEsc(pos[0])+"/image?format="+apEsc(format), nil)
	if err != nil {
		return err
	}
	if cl.token != "" {
		req.Header.Set("Authorization", "Bearer "+cl.token)
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		return fmt.Errorf("appliance at %s: %w", cl.where, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("download %s: %s", pos[0], resp.Status)
	}
	var w io.Writer = os.Stdout
	var f *os.File
	if out != "-" {
		if f, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return fmt.Errorf("image download: %w", err)
		}
		w = f
	}
	n, err := copySparse(w, f, resp.Body, format == "raw")
	if err == nil && f != nil {
		err = f.Close()
	}
	if err != nil {
		if f != nil {
			f.Close()
			os.Remove(out)
		}
		return fmt.Errorf("image download %s: %w", pos[0], err)
	}
	if !c.json && out != "-" {
		fmt.Fprintf(os.Stderr, "wrote %s (%s)\n", out, apBytes(n))
	}
	return nil
}

// copySparse copies r to w; into a file with sparse set, all-zero 4 MiB
// blocks are skipped (holes) and the size set at the end.
func copySparse(w io.Writer, f *os.File, r io.Reader, sparse bool) (int64, error) {
	if f == nil || !sparse {
		return io.Copy(w, r)
	}
	buf := make([]byte, images.BlockSize)
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if !images.IsZero(buf[:n]) {
				if _, werr := f.WriteAt(buf[:n], off); werr != nil {
					return off, werr
				}
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return off, f.Truncate(off)
		}
		if err != nil {
			return off, err
		}
	}
}

// imageRestore is `cairn image restore SNAPSHOT [--path P] [--mode ssh|sftp] [--device]`.
func imageRestore(ctx context.Context, args []string) error {
	var c apConn
	var in appliance.ImageRestoreInput
	fs := apFlagSet("image restore", "image restore SNAPSHOT|latest [--host H --source S] [--path P] [--mode ssh|sftp] [--device]")
	c.register(fs)
	fs.StringVar(&in.Host, "host", "", "the host (with latest)")
	fs.StringVar(&in.Source, "source", "", "the source (with latest)")
	fs.StringVar(&in.Path, "path", "", "absolute path on the host to write (overwritten; admins only); default the source's own path")
	fs.StringVar(&in.Mode, "mode", "", "ssh (dd over SSH, also block devices) or sftp; default from the source's method")
	fs.BoolVar(&in.Device, "device", false, "the path is a block device at least as large as the image (mode ssh)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("image restore: want one snapshot ID (or latest with --host and --source)")
	}
	in.Snapshot = pos[0]
	cl, err := c.client()
	if err != nil {
		return err
	}
	var job appliance.JobBody
	if err := cl.do(ctx, "POST", "/api/v1/images/restore", in, &job); err != nil {
		return err
	}
	final, err := apWaitJob(ctx, cl, job.ID, "image restore")
	if err != nil {
		return err
	}
	if c.json {
		if err := apPrintJSON(final); err != nil {
			return err
		}
	}
	if err := apJobResult(final); err != nil {
		return err
	}
	var p struct{ Result appliance.ImageRestoreResult }
	json.Unmarshal(final.Progress, &p)
	if !c.json {
		fmt.Fprintf(os.Stderr, "restored to %s over %s: %d of %d blocks differed and were written (%s), verified\n",
			p.Result.Path, p.Result.Mode, p.Result.Written, p.Result.Blocks, apBytes(p.Result.WrittenBytes))
	}
	return nil
}

// directImages opens the image pool of a direct verb: loc, or else the
// image pool nested in a replica (<pool>/images), or else the appliance
// layout's sibling of a directory pool (DATA/pool → DATA/images) when it
// holds an image pool. nil, nil: there is none. $CAIRN_IMAGES_KEY_FILE,
// when set, is the image pool's key file.
func directImages(ctx context.Context, poolLoc, loc, keyFile string) (*images.Store, error) {
	if loc == "" && poolLoc != "" {
		if nested := nestedImages(ctx, poolLoc); nested != "" {
			loc = nested
		}
	}
	if loc == "" {
		if strings.Contains(poolLoc, "://") || poolLoc == "" {
			return nil, nil
		}
		sib := filepath.Join(filepath.Dir(filepath.Clean(poolLoc)), "images")
		if _, err := os.Stat(filepath.Join(sib, images.MarkerName)); err != nil {
			return nil, nil
		}
		loc = sib
	}
	if k := os.Getenv("CAIRN_IMAGES_KEY_FILE"); k != "" {
		keyFile = k
	}
	b, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{})
	if err != nil {
		return nil, err
	}
	// The appliance keeps an encrypted image pool's own key next to it
	// (DATA/images.key); else the pool's key file is tried.
	if !strings.Contains(loc, "://") {
		if k := filepath.Join(filepath.Dir(filepath.Clean(loc)), "images.key"); fileExists(k) {
			keyFile = k
		}
	}
	s, err := images.Open(ctx, b, pool.OpenOptions{KeyFile: keyFile}, nil)
	if err != nil {
		return nil, fmt.Errorf("image pool %s: %w", pool.RedactLocation(loc), err)
	}
	return s, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// imageTree overlays the image versions of the image pool (see
// directImages) onto a pool's restore tree, or returns base unchanged.
func imageTree(ctx context.Context, p *pool.Pool, base fs.FS, poolLoc, imagesLoc, keyFile string) (fs.FS, error) {
	s, err := directImages(ctx, poolLoc, imagesLoc, keyFile)
	if err != nil || s == nil {
		return base, err
	}
	return images.NewTree(ctx, base, p, func() (*images.Store, error) { return s, nil }), nil
}

// checkImagesDirect is the image pool's part of `cairn pool check`.
func checkImagesDirect(ctx context.Context, poolLoc, imagesLoc, keyFile string, readData bool, pct float64, asJSON bool) error {
	s, err := directImages(ctx, poolLoc, imagesLoc, keyFile)
	if err != nil || s == nil {
		return err
	}
	rep, err := s.Check(ctx, pool.CheckOptions{ReadData: readData, Percent: pct})
	if err != nil {
		return fmt.Errorf("check image pool %s: %w", pool.RedactLocation(s.Pool().Location()), err)
	}
	if asJSON {
		if err := printJSON(struct {
			OK bool `json:"ok"`
			images.CheckReport
		}{rep.OK(), rep}); err != nil {
			return err
		}
	} else {
		for _, v := range rep.BadVersions {
			fmt.Printf("bad image manifest: %s\n", v)
		}
		for _, u := range rep.Affected {
			fmt.Printf("damaged: image %s version %s at offset %s (block %s)\n", u.Name, u.ID, strconv.FormatInt(u.Offset, 10), u.Digest)
		}
		fmt.Printf("images: %s\n", rep.String())
	}
	if !rep.OK() {
		return fmt.Errorf("image pool %s is damaged: %d bad manifests, %d missing and %d corrupt blocks",
			pool.RedactLocation(s.Pool().Location()), len(rep.BadVersions), len(rep.Missing), len(rep.Corrupt))
	}
	return nil
}
