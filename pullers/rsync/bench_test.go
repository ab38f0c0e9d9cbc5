package rsync_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

// BenchmarkVsRsync pulls one corpus from a real daemon with cairn and with
// `rsync -a` into a plain directory: (a) first pull, (b) no change, (c)
// after mutating 1 in 20 files (8 bytes each). It reports seconds and
// bytes received for each. One iteration is the whole comparison:
//
//	go test -run XXX -bench VsRsync -benchtime 1x ./pullers/rsync/
func BenchmarkVsRsync(b *testing.B) {
	testenv.Need(b, "rsync")
	s := testenv.Rsyncd(b)
	r := rand.New(rand.NewPCG(7, 7))
	const files = 5000
	var paths []string
	for i := range files {
		p := filepath.Join(s.Dir, fmt.Sprintf("d%02d/f%05d", i%50, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		data := make([]byte, 1000+r.IntN(80000))
		for k := range data {
			data[k] = byte(r.Uint32())
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, p)
	}
	old := time.Now().Add(-time.Hour)
	for _, p := range paths {
		os.Chtimes(p, old, old)
	}
	dest := b.TempDir()
	pool := pullertest.NewPool(b)
	var prev pullers.Previous
	received := regexp.MustCompile(`received ([0-9,]+) bytes`)
	for b.Loop() {
		for _, phase := range []string{"a-first", "b-nochange", "c-mutated"} {
			if phase == "c-mutated" {
				for i, p := range paths {
					if i%20 == 0 {
						f, _ := os.OpenFile(p, os.O_WRONLY, 0)
						f.WriteAt([]byte("MUTATED!"), 500)
						f.Close()
					}
				}
			}
			start := time.Now()
			out, err := exec.Command("rsync", "-a", "--stats", s.URL(s.Module), dest+"/").CombinedOutput()
			if err != nil {
				b.Fatalf("rsync: %v %s", err, out)
			}
			rs := time.Since(start).Seconds()
			m := received.FindSubmatch(out)
			var rb float64
			if m != nil {
				v, _ := strconv.ParseFloat(string(regexp.MustCompile(",").ReplaceAll(m[1], nil)), 64)
				rb = v
			}
			pl := rsync.New()
			start = time.Now()
			mf, _ := pullertest.Pull(b, pool, pl, daemonSource(s, s.Module, "/"), prev, nil)
			cs := time.Since(start).Seconds()
			prev = basisPrevious{pullertest.PoolPrevious{Pool: pool, Root: mf.Root}}
			b.Logf("%s: cairn %.2fs %d bytes; rsync -a %.2fs %.0f bytes", phase, cs, pl.BytesReceived(), rs, rb)
			b.ReportMetric(cs, phase+"-cairn-s")
			b.ReportMetric(rs, phase+"-rsync-s")
			b.ReportMetric(float64(pl.BytesReceived()), phase+"-cairn-B")
			b.ReportMetric(rb, phase+"-rsync-B")
		}
	}
}
