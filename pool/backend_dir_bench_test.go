package pool

import (
	"bytes"
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDirBackendPut stores new content objects (Stat, then Put of a
// 4 KiB body, as Pool.PutDigest does) on a real disk directory
// ($CAIRN_BENCH_DIR, else a temporary directory), with the openat2 fast
// path and with the os.Root fallback. cpu-µs/op is user+system CPU per
// object, which a busy machine distorts less than wall time.
func BenchmarkDirBackendPut(b *testing.B) {
	for _, mode := range []string{"openat2", "osroot"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			parent := os.Getenv("CAIRN_BENCH_DIR")
			if parent == "" {
				parent = b.TempDir()
			}
			dir, err := os.MkdirTemp(parent, "cairn-put-")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { os.RemoveAll(dir) })
			be, err := NewDirBackend(dir)
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			if mode == "osroot" && be.fd >= 0 {
				syscall.Close(be.fd)
				be.fd = -1
			}
			body := bytes.Repeat([]byte{'x'}, 4096)
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			i := 0
			for b.Loop() {
				d := plainSum([]byte{byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24)})
				i++
				name := ObjectName(d)
				if _, err := be.Stat(ctx, name); err == nil {
					b.Fatal("exists")
				}
				if err := be.Put(ctx, name, bytes.NewReader(body), int64(len(body))); err != nil {
					b.Fatal(err)
				}
			}
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime) - syscall.TimevalToNsec(ru0.Utime) +
				syscall.TimevalToNsec(ru1.Stime) - syscall.TimevalToNsec(ru0.Stime))
			b.ReportMetric(float64(cpu.Microseconds())/float64(i), "cpu-µs/op")
		})
	}
}
