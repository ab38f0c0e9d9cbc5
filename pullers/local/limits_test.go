package local

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pullers"
)

// TestMaxDirEntries: Options["max_dir_entries"] keeps that many names of
// a bigger directory (whichever the kernel returned first), says so on
// the directory, and leaves smaller directories whole.
func TestMaxDirEntries(t *testing.T) {
	src := t.TempDir()
	for i := range 50 {
		write(t, filepath.Join(src, "big", fmt.Sprintf("f%02d", i)), []byte{byte(i)}, 0o644)
	}
	for i := range 5 {
		write(t, filepath.Join(src, "small", fmt.Sprintf("s%d", i)), []byte{byte(i)}, 0o644)
	}
	s := newMemSink(t)
	pull(t, src, s, nil, nil, map[string]string{"max_dir_entries": "7"})
	if got := s.paths("big/"); len(got) != 7 {
		t.Errorf("big: %d names kept, want 7: %q", len(got), got)
	}
	for _, p := range s.paths("big/") {
		var i int
		fmt.Sscanf(p, "big/f%d", &i)
		if d := s.data[p]; len(d) != 1 || d[0] != byte(i) {
			t.Errorf("%s holds %v", p, d)
		}
	}
	if got := s.paths("small/"); len(got) != 5 {
		t.Errorf("small: %q, want all 5", got)
	}
	if e := s.errText("big"); !strings.Contains(e, "more than 7 names; kept the first 7 read (option max_dir_entries)") {
		t.Errorf("error on big: %q", e)
	}
	if e := s.errText("small"); e != "" {
		t.Errorf("error on small: %q", e)
	}
	// The root has 2 names: a cap of 2 is no cut.
	s = newMemSink(t)
	pull(t, src, s, nil, nil, map[string]string{"max_dir_entries": "2"})
	if e := s.errText("."); e != "" {
		t.Errorf("cap 2 on a root of 2 names: %q", e)
	}
	// Bad values are permanent errors naming the option.
	for _, v := range []string{"0", "-3", "lots"} {
		err := New().Pull(context.Background(), &pullers.Job{Source: pullers.Source{Path: src, Options: map[string]string{"max_dir_entries": v}}, Sink: newMemSink(t)})
		if err == nil || !strings.Contains(err.Error(), "max_dir_entries") || !errors.Is(err, pullers.ErrPermanent) {
			t.Errorf("max_dir_entries=%q: %v", v, err)
		}
	}
}
