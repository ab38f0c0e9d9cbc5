package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// tarOf writes dir as a tar.zst (or, zipped, as a zip) at out.
func archiveOf(t *testing.T, dir, out string, asZip bool) {
	t.Helper()
	var buf bytes.Buffer
	var tw *tar.Writer
	var zw *zip.Writer
	if asZip {
		zw = zip.NewWriter(&buf)
	} else {
		tw = tar.NewWriter(&buf)
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		if zw != nil {
			h, err := zip.FileInfoHeader(fi)
			if err != nil {
				return err
			}
			h.Name, h.Method = filepath.ToSlash(rel), zip.Deflate
			if d.IsDir() {
				h.Name += "/"
			}
			w, err := zw.CreateHeader(h)
			if err != nil {
				return err
			}
			if link != "" {
				w.Write([]byte(link))
			} else if fi.Mode().IsRegular() {
				b, _ := os.ReadFile(p)
				w.Write(b)
			}
			return nil
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	if zw != nil {
		zw.Close()
		data = buf.Bytes()
	} else {
		tw.Close()
		enc, _ := zstd.NewWriter(nil)
		data = enc.EncodeAll(buf.Bytes(), nil)
	}
	if err := os.WriteFile(out, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestImportArchive: `cairn import` through the appliance (streamed POST)
// and straight into a pool makes snapshots identical to the archived
// tree; a hostile archive is refused with one clear line and no snapshot.
func TestImportArchive(t *testing.T) {
	testenv.NeedRoot(t, "needs root for the socket")
	tmp := t.TempDir()
	src, data := filepath.Join(tmp, "src"), filepath.Join(tmp, "data")
	makeTree(t, src)
	want := treeDigest(t, src)
	tzst, zp := filepath.Join(tmp, "a.tar.zst"), filepath.Join(tmp, "a.zip")
	archiveOf(t, src, tzst, false)
	archiveOf(t, src, zp, true)

	startServe(t, data)
	mustCLI(t, data, "host", "add", "web1", "--method", "local", "--path", src, "--source", "files")
	id := strings.TrimSpace(mustCLI(t, data, "import", "--host", "web1", "--source", "arch", tzst))
	var snaps []e2eSnapshot
	json.Unmarshal([]byte(mustCLI(t, data, "backup", "ls", "--json")), &snaps)
	if len(snaps) != 1 || snaps[0].ID != id || snaps[0].Source != "arch" || snaps[0].Status != "complete" {
		t.Fatalf("snapshots after the import: %+v (import said %s)", snaps, id)
	}
	r1 := filepath.Join(tmp, "r1")
	mustCLI(t, data, "restore", "web1/"+id, "--to", r1)
	compareTrees(t, want, treeDigest(t, r1))

	// Hostile: refused, one line naming the member, nothing stored.
	var hb bytes.Buffer
	tw := tar.NewWriter(&hb)
	tw.WriteHeader(&tar.Header{Name: "ok.txt", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644})
	tw.Write([]byte("ok"))
	tw.WriteHeader(&tar.Header{Name: "../../etc/cron.d/evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	evil := filepath.Join(tmp, "evil.tar")
	os.WriteFile(evil, hb.Bytes(), 0o600)
	_, errOut, code := cairnCLI(t, data, "import", "--host", "web1", evil)
	if code == 0 || !strings.Contains(errOut, "archive refused") || !strings.Contains(errOut, "leaves the tree") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("hostile import: exit %d %q", code, errOut)
	}
	_, errOut, code = cairnCLI(t, data, "import", "--host", "nosuch", tzst)
	if code == 0 || !strings.Contains(errOut, "nosuch") {
		t.Fatalf("import to an unknown host: exit %d %q", code, errOut)
	}
	snaps = nil
	json.Unmarshal([]byte(mustCLI(t, data, "backup", "ls", "--json")), &snaps)
	if len(snaps) != 1 {
		t.Fatalf("snapshots after refused imports: %+v", snaps)
	}

	// Direct, into a pool without a server: the zip.
	pl := filepath.Join(tmp, "pool")
	mustCLI(t, data, "pool", "init", "--pool", pl)
	id2 := strings.TrimSpace(mustCLI(t, data, "import", "--pool", pl, "--host", "h", zp))
	r2 := filepath.Join(tmp, "r2")
	mustCLI(t, data, "restore", "--pool", pl, id2, "--to", r2)
	got := treeDigest(t, r2)
	for k, w := range want {
		// zip keeps no directory modes beyond what FileInfoHeader gives.
		if strings.HasPrefix(w, "dir") {
			delete(want, k)
			delete(got, k)
		}
	}
	compareTrees(t, want, got)
	if out := mustCLI(t, data, "pool", "check", "--pool", pl, "--read-data"); !strings.Contains(out, "no errors") {
		t.Fatalf("pool check: %s", out)
	}
}
