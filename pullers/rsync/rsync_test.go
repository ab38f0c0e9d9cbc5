package rsync_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

// caps is what protocol 27 carries (CAPABILITIES.md).
var caps = pullertest.Capabilities{Mode: true, Owner: true, MtimeRes: time.Second, DirMtime: true,
	Symlinks: true, AllNames: true}

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

// basisPrevious is a previous snapshot that also serves delta bases.
type basisPrevious struct{ pullertest.PoolPrevious }

func (b basisPrevious) OpenContent(ctx context.Context, e *pool.Entry) (*pool.ContentReader, error) {
	return b.Pool.OpenContent(ctx, e)
}

var _ rsync.Basis = basisPrevious{}

// rel returns dir relative to the served directory.
func rel(t *testing.T, served, dir string) string {
	t.Helper()
	if len(dir) < len(served) || dir[:len(served)] != served {
		t.Fatalf("%s is not below %s", dir, served)
	}
	return dir[len(served):]
}

func daemonSource(s *testenv.RsyncServer, module, path string) pullers.Source {
	src := pullers.Source{Method: rsync.Method, Name: "src", Path: path,
		Options: map[string]string{"host": s.Host, "port": strconv.Itoa(s.Port), "module": module}}
	if module == s.AuthModule {
		src.Options["user"] = s.User
		src.Secret = map[string]string{"password": s.Password}
	}
	return src
}

func TestConformanceDaemon(t *testing.T) {
	s := testenv.Rsyncd(t)
	pullertest.Run(t, pullertest.Config{
		Dir:       s.Dir,
		NewPuller: func() pullers.Puller { return rsync.New() },
		SourceFor: func(dir string) pullers.Source { return daemonSource(s, s.Module, rel(t, s.Dir, dir)) },
		Caps:      caps,
		Options:   pullertest.Options{Large: pullertest.LargeFromEnv()},
	})
}
