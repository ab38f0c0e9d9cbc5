package pool

import (
	"bytes"
	"errors"
	"io/fs"
	"reflect"
	"testing"
)

func sampleEntries() []Entry {
	d1 := Digest{1, 2, 3}
	d2 := Digest{9, 9}
	return []Entry{
		{Name: "zeta", Type: TypeFile, Mode: 0o644, UID: 1000, GID: 1000, User: "ann", Group: "staff",
			ModTime: 1700000000123456789, Size: 5, Content: d1, HardLink: 7},
		{Name: "alpha", Type: TypeDir, Mode: 0o755 | fs.ModeSticky, Subtree: d2, ModTime: -5,
			Xattrs: map[string][]byte{"user.b": {0, 1}, "system.posix_acl_access": []byte("acl")},
			Extra:  map[string]string{"smb.attrs": "HA", "a": ""}},
		{Name: "link", Type: TypeSymlink, Mode: 0o777, Target: "../etc/passwd"},
		{Name: "big", Type: TypeFile, Mode: 0o600, Size: 1 << 40, Content: d2, Chunked: true},
		{Name: "dev", Type: TypeBlockDev, Rdev: 0x803},
		{Name: "fifo", Type: TypeFIFO},
		{Name: "empty", Type: TypeFile},
		{Name: "ünïcode \u00e9", Type: TypeSocket, UID: 1<<32 - 1},
	}
}

func TestTreeRoundTrip(t *testing.T) {
	in := sampleEntries()
	b, err := EncodeTree(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeTree(b)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]Entry{}, in...)
	sortEntries(want)
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, want)
	}
	// Canonical: any input order gives the same bytes.
	rev := append([]Entry{}, in...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	b2, err := EncodeTree(rev)
	if err != nil || !bytes.Equal(b, b2) {
		t.Fatalf("encoding depends on input order (err %v)", err)
	}
	// Map iteration order must not matter either.
	for i := 0; i < 20; i++ {
		b3, _ := EncodeTree(sampleEntries())
		if !bytes.Equal(b, b3) {
			t.Fatal("encoding not deterministic")
		}
	}
}

func TestTreeEncodeRejects(t *testing.T) {
	for name, e := range map[string]Entry{
		"empty name":     {Name: "", Type: TypeFile},
		"dot":            {Name: ".", Type: TypeFile},
		"dotdot":         {Name: "..", Type: TypeFile},
		"slash":          {Name: "a/b", Type: TypeFile},
		"nul":            {Name: "a\x00", Type: TypeFile},
		"bad type":       {Name: "a", Type: 99},
		"type bits":      {Name: "a", Type: TypeFile, Mode: 0o644 | 1<<31},
		"negative size":  {Name: "a", Type: TypeFile, Size: -1},
		"dir no subtree": {Name: "a", Type: TypeDir},
		"file subtree":   {Name: "a", Type: TypeFile, Subtree: Digest{1}},
		"link content":   {Name: "a", Type: TypeSymlink, Content: Digest{1}},
		"no content":     {Name: "a", Type: TypeFile, Size: 3},
	} {
		if _, err := EncodeTree([]Entry{e}); err == nil {
			t.Errorf("%s: EncodeTree accepted %+v", name, e)
		}
	}
	if _, err := EncodeTree([]Entry{{Name: "a", Type: TypeFile}, {Name: "a", Type: TypeFIFO}}); err == nil {
		t.Error("duplicate names accepted")
	}
}

func TestTreeDecodeRejects(t *testing.T) {
	good, _ := EncodeTree([]Entry{{Name: "a", Type: TypeFile}, {Name: "b", Type: TypeFile}})
	unsorted := bytes.Replace(bytes.Clone(good), []byte("\x01a"), []byte("\x01c"), 1)
	dup := bytes.Replace(bytes.Clone(good), []byte("\x01b"), []byte("\x01a"), 1)
	dotdot, _ := EncodeTree([]Entry{{Name: "xy", Type: TypeFile}})
	dotdot = bytes.Replace(dotdot, []byte("xy"), []byte(".."), 1)
	slash, _ := EncodeTree([]Entry{{Name: "xy", Type: TypeFile}})
	slash = bytes.Replace(slash, []byte("xy"), []byte("x/"), 1)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"version":   append([]byte{2}, good[1:]...),
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 0),
		"unsorted":  unsorted,
		"duplicate": dup,
		"dotdot":    dotdot,
		"slash":     slash,
		"count":     {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := DecodeTree(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: DecodeTree = %v, want ErrCorrupt", name, err)
		}
	}
}

// normalize makes empty maps nil, as DecodeTree returns them.
func normalize(es []Entry) {
	for i := range es {
		if len(es[i].Xattrs) == 0 {
			es[i].Xattrs = nil
		}
		if len(es[i].Extra) == 0 {
			es[i].Extra = nil
		}
	}
}

func FuzzDecodeTree(f *testing.F) {
	b, _ := EncodeTree(sampleEntries())
	f.Add(b)
	e, _ := EncodeTree(nil)
	f.Add(e)
	f.Add([]byte{1, 1, 1, 'a', 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := DecodeTree(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		enc, err := EncodeTree(es)
		if err != nil {
			t.Fatalf("decoded entries do not re-encode: %v", err)
		}
		es2, err := DecodeTree(enc)
		if err != nil {
			t.Fatalf("re-encoded tree does not decode: %v", err)
		}
		normalize(es)
		if !reflect.DeepEqual(es, es2) {
			t.Fatalf("round trip mismatch:\n%+v\n%+v", es, es2)
		}
		enc2, _ := EncodeTree(es2)
		if !bytes.Equal(enc, enc2) {
			t.Fatal("encoding not canonical")
		}
	})
}

func FuzzDecodeChunkList(f *testing.F) {
	f.Add(appendChunkList(nil, []int64{5, 1 << 20}, []Digest{{1}, {2}}))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		refs, err := decodeChunkList(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		var sizes []int64
		var ds []Digest
		var off int64
		for _, r := range refs {
			if r.off != off || r.size <= 0 {
				t.Fatalf("bad offsets %+v", refs)
			}
			off += r.size
			sizes = append(sizes, r.size)
			ds = append(ds, r.d)
		}
		if enc := appendChunkList(nil, sizes, ds); !bytes.Equal(enc, data) {
			refs2, err := decodeChunkList(enc)
			if err != nil || !reflect.DeepEqual(refs, refs2) {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}
