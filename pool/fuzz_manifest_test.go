package pool_test

import (
	"context"
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pool/backendtest"
)

// FuzzSnapshotManifest: a snapshot manifest is read back from storage
// (a replica, an S3 bucket someone else can write to), so any bytes stored
// under snapshots/<id> give a manifest or a clear error, never a panic,
// and what is accepted names the snapshot it is stored as.
func FuzzSnapshotManifest(f *testing.F) {
	f.Add([]byte(`{"id":"20260101T000000Z-00000001","host":"h","source":"s","start":"2026-01-01T00:00:00Z",` +
		`"end":"2026-01-01T00:00:01Z","root":"` + pool.Digest{1}.String() + `","status":"complete","files":1,"format":1}`))
	f.Add([]byte(`{"id":"20260101T000000Z-00000001","host":"../x","source":"s","format":1}`))
	f.Add([]byte(`{"root_entry":"AAAA"}`))
	f.Add([]byte(`null`))
	ctx := context.Background()
	p, err := pool.Init(ctx, backendtest.NewMem(), pool.InitOptions{})
	if err != nil {
		f.Fatal(err)
	}
	const id = "20260101T000000Z-00000001"
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := p.PutNamed(ctx, "snapshots/"+id, pool.KindManifest, data); err != nil {
			t.Fatal(err)
		}
		m, err := p.Snapshot(ctx, id)
		if err != nil {
			return
		}
		if m.ID != id || !pool.ValidName(m.Host) || !pool.ValidName(m.Source) {
			t.Fatalf("accepted %+v", m)
		}
	})
}
