package rsync

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/cairn-backup/cairn/pullers"
)

// synthList is a protocol-31 file list (varint flags, no xattrs) of dirs
// directories with files files each, the names sent with the previous
// name's prefix as rsync does.
func synthList(dirs, files int) []byte {
	var b []byte
	last := ""
	add := func(name string, mode uint32, size int64) {
		l1 := 0
		for l1 < len(last) && l1 < len(name) && l1 < 255 && last[l1] == name[l1] {
			l1++
		}
		flags := int32(0x40)
		if l1 > 0 {
			flags |= 0x20
		}
		b = appendVarint(b, flags)
		if l1 > 0 {
			b = append(b, byte(l1))
		}
		b = appendVarint(b, int32(len(name)-l1))
		b = append(b, name[l1:]...)
		b = appendVarlong(b, size, 3)
		b = appendVarlong(b, 1700000000, 4)
		b = binary.LittleEndian.AppendUint32(b, mode)
		b = appendVarint(b, 1000)
		b = appendVarint(b, 1000)
		last = name
	}
	add(".", 0o40755, 0)
	for d := range dirs {
		dn := fmt.Sprintf("dir%04d", d)
		add(dn, 0o40755, 0)
		for f := range files {
			add(fmt.Sprintf("%s/file%06d.dat", dn, f), 0o100644, int64(f*100))
		}
	}
	return append(b, 0, 0)
}

// listAndPlan decodes the list and plans the pull (no previous snapshot):
// the structures a pull holds for its whole length.
func listAndPlan(b []byte) ([]*file, []item, error) {
	r := &rawReader{r: bytes.NewReader(b)}
	list, err := readFileList30(r, flistOpts{owner: true, devices: true, links: true, hard: true, proto: 31, varintFlags: true}, &flist30{})
	if err != nil {
		return nil, nil, err
	}
	x := &xfer{t: &target{host: "h"}, j: &pullers.Job{}, proto: 31}
	plan, err := x.plan(context.Background(), list)
	return list, plan, err
}

// TestMemoryPerEntry reports the heap the file list and the plan keep per
// entry (go test -run MemoryPerEntry -v); it fails only far above the
// budget, as a guard against regressions, not a benchmark.
func TestMemoryPerEntry(t *testing.T) {
	dirs, files := 100, 1000
	if v, err := strconv.Atoi(os.Getenv("CAIRN_RSYNC_MEM_DIRS")); err == nil && v > 0 {
		dirs = v // e.g. 1000 for a million entries
	}
	b := synthList(dirs, files)
	n := dirs*files + dirs + 1
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	list, plan, err := listAndPlan(b)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	per := float64(m1.HeapAlloc-m0.HeapAlloc) / float64(n)
	t.Logf("%d entries: %.0f bytes per entry held (list and plan), %.0f allocated", n, per, float64(m1.TotalAlloc-m0.TotalAlloc)/float64(n))
	if len(list) != n || len(plan) != n {
		t.Fatalf("list %d, plan %d, want %d", len(list), len(plan), n)
	}
	if per > 400 {
		t.Errorf("%.0f bytes per entry: the list or the plan grew (about 150 expected)", per)
	}
	runtime.KeepAlive(list)
	runtime.KeepAlive(plan)
}
