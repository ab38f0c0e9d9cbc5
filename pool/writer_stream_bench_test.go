package pool

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"
)

// BenchmarkAddStream compares storing a 256 MiB stream of unknown size
// (AddStream) with the old way: spool it to a temp file, then Add it
// with its size.
func BenchmarkAddStream(b *testing.B) {
	const n = 256 << 20
	for _, mode := range []string{"stream", "spool"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(n)
			for i := 0; i < b.N; i++ {
				ctx := context.Background()
				p := benchPool(b)
				w, err := p.NewWriter(ctx, SnapshotMeta{Host: "h", Source: "s"})
				if err != nil {
					b.Fatal(err)
				}
				w.Add(ctx, ".", Entry{Type: TypeDir, Mode: 0o755}, nil)
				src := &patReader{n: n}
				if mode == "stream" {
					if _, err := w.AddStream(ctx, "dump", Entry{Type: TypeFile, Mode: 0o600}, src); err != nil {
						b.Fatal(err)
					}
				} else {
					f, err := os.CreateTemp(b.TempDir(), "spool")
					if err != nil {
						b.Fatal(err)
					}
					size, _ := io.Copy(f, src)
					f.Seek(0, io.SeekStart)
					if err := w.Add(ctx, "dump", Entry{Type: TypeFile, Mode: 0o600, Size: size}, f); err != nil {
						b.Fatal(err)
					}
					f.Close()
				}
				if _, err := w.Finish(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckpoints measures a 20,000-file snapshot without
// checkpoints and with one every 1,000 files.
func BenchmarkCheckpoints(b *testing.B) {
	dirs, files, total := makeBenchCorpus(20000, 0, 16<<10)
	for _, every := range []int64{0, 1000} {
		b.Run(fmt.Sprintf("every=%d", every), func(b *testing.B) {
			b.SetBytes(total)
			for i := 0; i < b.N; i++ {
				ctx := context.Background()
				p := benchPool(b)
				w, err := p.NewWriterWith(ctx, SnapshotMeta{Host: "h", Source: "s"}, WriterOptions{Checkpoint: CheckpointOptions{Files: every}})
				if err != nil {
					b.Fatal(err)
				}
				if err := addBenchCorpus(ctx, w, dirs, files); err != nil {
					b.Fatal(err)
				}
				if _, err := w.Finish(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// addBenchCorpus adds a makeBenchCorpus tree without large files.
func addBenchCorpus(ctx context.Context, w *Writer, dirs []string, files []benchFile) error {
	if err := w.Add(ctx, ".", Entry{Type: TypeDir, Mode: 0o755}, nil); err != nil {
		return err
	}
	fi := 0
	for _, d := range dirs {
		if err := w.Add(ctx, d, Entry{Type: TypeDir, Mode: 0o755}, nil); err != nil {
			return err
		}
		for ; fi < len(files) && len(files[fi].path) > len(d) && files[fi].path[:len(d)+1] == d+"/"; fi++ {
			f := files[fi]
			if err := w.Add(ctx, f.path, Entry{Type: TypeFile, Mode: 0o644, Size: int64(len(f.data))}, bytes.NewReader(f.data)); err != nil {
				return err
			}
		}
	}
	return nil
}
