package appliance

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// archived is what an archive held: file digests, symlink targets and
// modes by path relative to the top directory.
type archived struct {
	sums  map[string]string
	links map[string]string
	modes map[string]fs.FileMode
	tops  map[string]bool
}

func newArchived() *archived {
	return &archived{sums: map[string]string{}, links: map[string]string{}, modes: map[string]fs.FileMode{}, tops: map[string]bool{}}
}

func (a *archived) add(t *testing.T, name string, mode fs.FileMode, r io.Reader, link string) {
	t.Helper()
	name = strings.TrimSuffix(name, "/")
	if strings.HasPrefix(name, "/") || strings.Contains("/"+name+"/", "/../") {
		t.Fatalf("unsafe entry name %q", name)
	}
	top, rel, _ := strings.Cut(name, "/")
	a.tops[top] = true
	if rel == "" {
		return
	}
	a.modes[rel] = mode
	switch {
	case mode&fs.ModeSymlink != 0:
		a.links[rel] = link
	case mode.IsRegular():
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		a.sums[rel] = sha(b)
	}
}

// TestSnapshotArchive downloads the snapshot root and a subdirectory as
// zip, tar and tar.zst, unpacks them and compares with the source.
func TestSnapshotArchive(t *testing.T) {
	re := newRestoreEnv(t)
	get := func(path, auth string) (int, []byte) {
		req, _ := http.NewRequest("GET", re.srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	base := "/api/v1/snapshots/" + re.wwwSnap + "/archive/"
	if code, _ := get(base+"?format=tar", ""); code != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", code)
	}
	var pgSnaps []SnapshotBody
	re.must("socket", "GET", "/api/v1/snapshots?host=pg", nil, &pgSnaps)
	if code, _ := get("/api/v1/snapshots/"+pgSnaps[0].ID+"/archive/?format=tar", re.aliceTok); code != http.StatusNotFound {
		t.Fatalf("other group's snapshot: %d, want 404", code)
	}
	if code, _ := get(base+"?format=rar", re.aliceTok); code != http.StatusBadRequest {
		t.Fatalf("bad format: %d", code)
	}
	for _, format := range []string{"zip", "tar", "tar.zst"} {
		code, body := get(base+"?format="+format, re.aliceTok)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", format, code, body)
		}
		got := newArchived()
		switch format {
		case "zip":
			zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range zr.File {
				rc, err := f.Open()
				if err != nil {
					t.Fatal(err)
				}
				link := ""
				if f.Mode()&fs.ModeSymlink != 0 {
					b, _ := io.ReadAll(rc)
					link = string(b)
				}
				got.add(t, f.Name, f.Mode(), rc, link)
				rc.Close()
			}
		default:
			var r io.Reader = bytes.NewReader(body)
			if format == "tar.zst" {
				zr, err := zstd.NewReader(r)
				if err != nil {
					t.Fatal(err)
				}
				defer zr.Close()
				r = zr
			}
			tr := tar.NewReader(r)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", format, err)
				}
				got.add(t, h.Name, h.FileInfo().Mode(), tr, h.Linkname)
			}
		}
		if len(got.tops) != 1 {
			t.Fatalf("%s: top directories %v, want one", format, got.tops)
		}
		if len(got.sums) != len(re.sums) {
			t.Fatalf("%s: files %v, want %v", format, got.sums, re.sums)
		}
		for name, want := range re.sums {
			if got.sums[name] != want {
				t.Fatalf("%s: %s sha %s, want %s", format, name, got.sums[name], want)
			}
		}
		if got.links["sub/link"] != "../a.txt" || got.modes["sub/link"]&fs.ModeSymlink == 0 {
			t.Fatalf("%s: sub/link = %q mode %v", format, got.links["sub/link"], got.modes["sub/link"])
		}
		if m := got.modes["sub/deep/c.sh"].Perm(); m != 0o750 {
			t.Fatalf("%s: c.sh mode %v, want 0750", format, m)
		}
		if !got.modes["sub/deep"].IsDir() {
			t.Fatalf("%s: sub/deep mode %v", format, got.modes["sub/deep"])
		}
	}
	// A subdirectory: its name is the top directory.
	code, body := get(base+"sub?format=tar", re.aliceTok)
	if code != http.StatusOK {
		t.Fatalf("sub: %d %s", code, body)
	}
	got := newArchived()
	tr := tar.NewReader(bytes.NewReader(body))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got.add(t, h.Name, h.FileInfo().Mode(), tr, h.Linkname)
	}
	if !got.tops["sub"] || len(got.tops) != 1 || got.sums["b.bin"] != re.sums["sub/b.bin"] || got.links["link"] != "../a.txt" {
		t.Fatalf("sub archive: tops %v sums %v links %v", got.tops, got.sums, got.links)
	}
}
