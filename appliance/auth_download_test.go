package appliance

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// hostileMethod is a puller whose server sends the nastiest names the pool
// accepts (anything but "", ".", "..", "/" and NUL): Windows separators and
// drive letters, dot-dot in backslash form, control characters, and links
// pointing out of the tree.
const hostileMethod = "apptest-hostile"

var hostileNames = []string{
	`..\..\evil.txt`, `..\`, `C:\Windows\system32\evil.dll`, `\\server\share\x`, `C:`, `...`, `-rf`,
	"new\nline", "tab\tand\rcr", "ünïcödé ✓", strings.Repeat("L", 255), ` leading space`, `trailing dot.`,
}

func init() {
	pullers.Register(hostileMethod, func() pullers.Puller { return hostilePuller{} })
}

type hostilePuller struct{}

func (hostilePuller) Pull(ctx context.Context, j *pullers.Job) error {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	if err := j.Sink.Add(ctx, ".", pool.Entry{Name: ".", Type: pool.TypeDir, Mode: 0o755, ModTime: now}, nil); err != nil {
		return err
	}
	for n, target := range map[string]string{"up": "../../../../etc/passwd", "abs": "/etc/shadow", "win": `..\..\boot.ini`} {
		if err := j.Sink.Add(ctx, n, pool.Entry{Name: n, Type: pool.TypeSymlink, Mode: 0o777, ModTime: now, Target: target}, nil); err != nil {
			return err
		}
	}
	for _, dir := range []string{"", `..\sub/`} {
		if dir != "" {
			if err := j.Sink.Add(ctx, `..\sub`, pool.Entry{Name: `..\sub`, Type: pool.TypeDir, Mode: 0o755, ModTime: now}, nil); err != nil {
				return err
			}
		}
		for _, n := range hostileNames {
			data := []byte("content of " + n)
			if err := j.Sink.Add(ctx, dir+n, pool.Entry{Name: n, Type: pool.TypeFile, Mode: 0o644, ModTime: now, Size: int64(len(data))},
				bytes.NewReader(data)); err != nil {
				return err
			}
		}
	}
	return nil
}

// unsafeArchiveName reports why an archive member name could escape the
// directory it is extracted into, on Unix or Windows extractors alike, or
// "" if it cannot.
func unsafeArchiveName(name string) string {
	n := strings.TrimSuffix(name, "/")
	switch {
	case strings.HasPrefix(n, "/") || strings.HasPrefix(n, `\`):
		return "absolute"
	case len(n) >= 2 && n[1] == ':':
		return "drive letter"
	}
	for _, c := range strings.FieldsFunc(n, func(r rune) bool { return r == '/' || r == '\\' }) {
		if c == ".." {
			return "dot-dot component"
		}
	}
	if strings.ContainsRune(n, 0) {
		return "NUL"
	}
	return ""
}

// TestArchiveHostileNames: a snapshot full of names a hostile server chose
// downloads as zip, tar and tar.zst whose members are all relative, under
// one top directory, with no ".." component by either separator; every
// file's content is there; links stay links (never followed).
func TestArchiveHostileNames(t *testing.T) {
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{GCSchedule: "-", CheckSchedule: "-"})
	name := "evil"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{{Name: "data", Method: hostileMethod, Path: "/"}}}, nil)
	if j := e.waitJob(e.backup("evil").ID); j.State != "done" {
		t.Fatalf("backup: %+v", j)
	}
	var snaps []SnapshotBody
	e.must("socket", "GET", "/api/v1/snapshots?host=evil", nil, &snaps)
	for _, format := range []string{"zip", "tar"} {
		w := e.do("socket", "GET", "/api/v1/snapshots/"+snaps[0].ID+"/archive/?format="+format, nil)
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", format, w.Code, w.Body)
		}
		members := map[string]string{} // name → content or link target
		switch format {
		case "zip":
			zr, err := zip.NewReader(bytes.NewReader(w.Body.Bytes()), int64(w.Body.Len()))
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range zr.File {
				rc, err := f.Open()
				if err != nil {
					t.Fatalf("zip %q: %v", f.Name, err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				members[f.Name] = string(b)
			}
		case "tar":
			tr := tar.NewReader(bytes.NewReader(w.Body.Bytes()))
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(tr)
				members[h.Name] = string(b)
				if h.Typeflag == tar.TypeSymlink {
					members[h.Name] = "-> " + h.Linkname
				}
			}
		}
		top := ""
		files := 0
		for n, c := range members {
			if why := unsafeArchiveName(n); why != "" {
				t.Errorf("%s member %q: %s", format, n, why)
			}
			first, _, _ := strings.Cut(n, "/")
			if top == "" {
				top = first
			} else if first != top {
				t.Errorf("%s member %q is not under the top directory %q", format, n, top)
			}
			if strings.HasPrefix(c, "content of ") {
				files++
			}
		}
		if files != 2*len(hostileNames) {
			t.Errorf("%s: %d files with content, want %d", format, files, 2*len(hostileNames))
		}
		links := 0
		for _, c := range members {
			if strings.HasPrefix(c, "-> ") {
				links++
			}
		}
		if format == "tar" && links != 3 {
			t.Errorf("tar: %d symlinks, want 3 (kept as links)", links)
		}
	}
}
