package ftp

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
)

// TestMaxDirEntries: Options["max_dir_entries"] keeps the first names of a
// listing (in the server's order), says so on the directory, and the
// rest of the tree is pulled as usual; an endless listing is cut there
// with the heap flat.
func TestMaxDirEntries(t *testing.T) {
	s := newFakeServer(t)
	var list strings.Builder
	for _, n := range []string{"e", "d", "c", "b", "a"} {
		fmt.Fprintf(&list, "-rw-r--r-- 1 u g 1 Jan 02 2024 %s\r\n", n)
		s.files["/big/"+n] = []byte(n)
	}
	s.lists["/"] = "drwxr-xr-x 2 u g 4096 Jan 01 2024 big\r\ndrwxr-xr-x 2 u g 4096 Jan 01 2024 endless\r\n-rw-r--r-- 1 u g 2 Jan 02 2024 z\r\n"
	s.lists["/big"] = list.String()
	s.endless["/endless"] = true
	s.files["/z"] = []byte("zz")
	p := newPool(t)
	src := pullers.Source{Method: Method, Path: "/", Options: map[string]string{"host": "127.0.0.1", "port": portOf(s.addr()), "tls": "none", "max_dir_entries": "3"}}
	m, _, _, err := pull(t, p, &Puller{MaxListing: 1 << 40}, src, nil)
	must(t, err)
	got := treeOf(t, p, m)
	want := map[string]string{"big": "<dir>", "big/e": "e", "big/d": "d", "big/c": "c", "endless": "<dir>", "z": "zz"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("tree %q, want %q", keys(got), keys(want))
	}
	for _, dir := range []string{"big", "endless"} {
		if !errorsContain(m, dir, "more than 3 names; kept the first 3 listed (option max_dir_entries)") {
			t.Errorf("no cap error on %s: %q", dir, m.Errors)
		}
	}
	// The endless directory's first three names were kept (the server
	// has no content for them), the fourth never was.
	if !errorsContain(m, "endless/f000000002", "RETR") || errorsContain(m, "endless/f000000003", "") {
		t.Errorf("endless: kept names differ: %q", m.Errors)
	}
	if m.Status != pool.StatusPartial {
		t.Errorf("status %s, want partial", m.Status)
	}

	// A bad value is a clear, permanent error naming the option.
	for _, v := range []string{"0", "-1", "many", "1e9"} {
		src.Options["max_dir_entries"] = v
		_, _, _, err := pull(t, p, New(), src, nil)
		if err == nil || !strings.Contains(err.Error(), "max_dir_entries") || !errors.Is(err, pullers.ErrPermanent) {
			t.Errorf("max_dir_entries=%q: %v", v, err)
		}
	}
}

// TestEndlessListingMemory: listings of millions of lines stream through
// with the heap flat: hostile names are refused as they arrive (their
// errors capped) until the byte cap ends the listing, and valid names stop
// at the names cap. jlaffaye keeps nothing of a listing.
func TestEndlessListingMemory(t *testing.T) {
	for _, c := range []struct {
		name, line, max string
		wantErr         string
		wantLines       int // at least this many lines were sent
	}{
		{"hostile names", "-rw-r--r-- 1 u g 1 Jan 01 2020 ../x%07d\r\n", "", "listing exceeds the size limit", 1_000_000},
		{"valid names", "-rw-r--r-- 1 u g 1 Jan 01 2020 f%09d\r\n", "1000", "kept the first 1000 listed", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newFakeServer(t)
			s.lists["/"] = "drwxr-xr-x 2 u g 4096 Jan 01 2024 endless\r\n"
			s.endless["/endless"] = true
			s.endlessLine["/endless"] = c.line
			var base, ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&base)
			var peak uint64
			sent := 0
			s.onLines = func(n int) {
				runtime.ReadMemStats(&ms)
				peak, sent = max(peak, ms.HeapInuse), n
			}
			p := newPool(t)
			opts := map[string]string{"host": "127.0.0.1", "port": portOf(s.addr()), "tls": "none"}
			if c.max != "" {
				opts["max_dir_entries"] = c.max
			}
			m, _, _, err := pull(t, p, &Puller{MaxListing: 48 << 20}, pullers.Source{Method: Method, Path: "/", Options: opts}, nil)
			must(t, err)
			if !errorsContain(m, "endless", c.wantErr) {
				t.Errorf("no %q on endless: %q", c.wantErr, m.Errors[:min(len(m.Errors), 5)])
			}
			if len(m.Errors) > maxLineErrors+5 {
				t.Errorf("%d errors kept", len(m.Errors))
			}
			if sent < c.wantLines {
				t.Errorf("only %d lines sent", sent)
			}
			const limit = 48 << 20
			if peak > base.HeapInuse+limit {
				t.Errorf("heap in use grew by %d MiB over %d lines (limit %d MiB)", (peak-base.HeapInuse)>>20, sent, limit>>20)
			}
			t.Logf("%d lines: heap in use %d MiB → peak %d MiB", sent, base.HeapInuse>>20, peak>>20)
		})
	}
}

// TestLineSplitter: lines come out the same however the stream is cut,
// CR LF and LF alike, a last line without an end too, and an overlong
// line as its head with long set.
func TestLineSplitter(t *testing.T) {
	in := "a\r\nbb\n\r\n" + strings.Repeat("x", 20) + "\nlast"
	for chunk := 1; chunk <= len(in); chunk++ {
		var got []string
		ls := &lineSplitter{max: 8, fn: func(l string, long bool) bool {
			got = append(got, fmt.Sprintf("%s/%v", l, long))
			return true
		}}
		for b := []byte(in); len(b) > 0; b = b[min(chunk, len(b)):] {
			ls.write(b[:min(chunk, len(b))])
		}
		ls.flush()
		want := []string{"a/false", "bb/false", "/false", "xxxxxxxx/true", "last/false"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("chunk %d: %q, want %q", chunk, got, want)
		}
	}
	// A consumer that stops gets no more lines.
	n := 0
	ls := &lineSplitter{max: 8, fn: func(string, bool) bool { n++; return n < 2 }}
	if ls.write([]byte("1\n2\n3\n4\n")) || n != 2 {
		t.Fatalf("after stop: %d lines", n)
	}
}

// FuzzLineSplitter: for any stream and chunk size, the lines are those of
// splitting the whole stream at LF (CR dropped before LF), each at most
// max bytes, long exactly when cut.
func FuzzLineSplitter(f *testing.F) {
	f.Add([]byte("a\r\nb\n\nccc"), uint8(1), uint8(4))
	f.Add([]byte("-rw-r--r-- 1 u g 1 Jan 01 2020 x\r\n"), uint8(7), uint8(16))
	f.Fuzz(func(t *testing.T, data []byte, chunk, maxLen uint8) {
		c, mx := int(chunk)+1, int(maxLen)+1
		var got []string
		ls := &lineSplitter{max: mx, fn: func(l string, long bool) bool {
			if len(l) > mx {
				t.Fatalf("line of %d bytes, max %d", len(l), mx)
			}
			got = append(got, fmt.Sprintf("%v:%s", long, l))
			return true
		}}
		for b := data; len(b) > 0; b = b[min(c, len(b)):] {
			ls.write(b[:min(c, len(b))])
		}
		ls.flush()
		var want []string
		parts := bytes.Split(data, []byte("\n"))
		for i, part := range parts {
			if i == len(parts)-1 && len(part) == 0 {
				break
			}
			long := len(part) > mx
			l := part
			if long {
				l = part[:mx]
			} else {
				l = bytes.TrimSuffix(part, []byte("\r"))
			}
			want = append(want, fmt.Sprintf("%v:%s", long, l))
		}
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}
