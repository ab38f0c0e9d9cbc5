package main

import (
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
)

// randRead is the FUSE random-access client of the bench: it reads every
// -block-sized block of the first -span bytes of -file once, in an order
// shuffled by -seed (pread at each offset), and prints the bytes read and
// the SHA-256 of the blocks in read order. The same arguments on the
// source file print the same digest, which is how the bench checks what
// the mount served.
func randRead(args []string) error {
	fs := flag.NewFlagSet("randread", flag.ContinueOnError)
	file := fs.String("file", "", "file to read")
	span := fs.Int64("span", 40<<20, "read the first SPAN bytes (or the whole file when shorter)")
	block := fs.Int("block", 64<<10, "bytes per read")
	seed := fs.Uint64("seed", 1, "shuffle seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" || *block <= 0 || *span <= 0 {
		return errors.New("randread: -file, a positive -block and -span are required")
	}
	f, err := os.Open(*file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	n := min(*span, st.Size())
	blocks := int((n + int64(*block) - 1) / int64(*block))
	order := rand.New(rand.NewPCG(*seed, 0x5eed)).Perm(blocks)
	h := sha256.New()
	buf := make([]byte, *block)
	var total int64
	for _, i := range order {
		off := int64(i) * int64(*block)
		m := min(int64(*block), n-off)
		k, err := f.ReadAt(buf[:m], off)
		if err != nil && !(errors.Is(err, io.EOF) && int64(k) == m) {
			return fmt.Errorf("%s: read at %d: %w", *file, off, err)
		}
		h.Write(buf[:k])
		total += int64(k)
	}
	fmt.Printf("%d %x\n", total, h.Sum(nil))
	return nil
}
