package images

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// BenchmarkIngest measures ingest throughput of a 64 MiB image (half
// random, a quarter compressible, a quarter holes): "new" stores every
// block in a fresh pool, "unchanged" re-reads it against its previous
// version (every block read and hashed, nothing stored).
func BenchmarkIngest(b *testing.B) {
	const blocks = 16
	img := make([]byte, blocks*BlockSize)
	for i := range blocks {
		switch i % 4 {
		case 0, 1:
			fill(img, i, 9)
		case 2:
			fill(img, i, ^uint64(0))
		}
	}
	ctx := context.Background()
	for _, mode := range []string{"new", "unchanged"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(int64(len(img)))
			var prev *Manifest
			s := newStore(b, false)
			if mode == "unchanged" {
				m, _, err := s.IngestReaderAt(ctx, "bench", bytes.NewReader(img), int64(len(img)), IngestOptions{})
				if err != nil {
					b.Fatal(err)
				}
				prev = m
			}
			b.ResetTimer()
			for n := range b.N {
				if mode == "new" {
					b.StopTimer()
					s = newStore(b, false)
					b.StartTimer()
				}
				_, st, err := s.IngestReaderAt(ctx, fmt.Sprintf("bench%d", n%2), bytes.NewReader(img), int64(len(img)),
					IngestOptions{VersionOptions: VersionOptions{Prev: prev}})
				if err != nil {
					b.Fatal(err)
				}
				if (mode == "new") != (st.Stored == 12) {
					b.Fatalf("%s: stats %+v", mode, st)
				}
			}
		})
	}
}
