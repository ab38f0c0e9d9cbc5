package appliance

import (
	"context"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

var _ rsync.Basis = (*previousTree)(nil)

// OpenContent lets pullers read the previous snapshot's files as a delta
// basis (pullers/rsync.Basis): changed files cross the wire as deltas.
func (pt *previousTree) OpenContent(ctx context.Context, e *pool.Entry) (*pool.ContentReader, error) {
	return pt.p.OpenContent(ctx, e)
}
