package smb

import (
	"context"
	"strconv"

	"github.com/cairn-backup/cairn/pullers"
)

// Test is the connection test ("cairn host test"): it logs in, mounts the
// share, lists the source path and reports what it saw:
//
//	share, path, entries   the share, the directory listed, its names
//
// (go-smb2 does not expose the negotiated dialect.)
func (p *Puller) Test(ctx context.Context, s pullers.Source) (map[string]string, error) {
	t, err := parseTarget(s)
	if err != nil {
		return nil, err
	}
	cn, err := p.dial(ctx, t)
	if err != nil {
		return nil, err
	}
	defer cn.Close()
	w := &walker{t: t, cn: cn, base: cleanBase(s.Path), maxEntries: DefaultMaxEntries}
	out := map[string]string{"share": t.share, "path": "/" + w.base}
	fis, err := w.list("")
	if err != nil {
		return out, w.fatal(ctx, "", err)
	}
	out["entries"] = strconv.Itoa(len(fis))
	return out, nil
}
