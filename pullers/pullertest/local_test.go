package pullertest_test

import (
	"os"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/local"
	"github.com/cairn-backup/cairn/pullers/pullertest"
)

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

// TestLocal validates the scenario with the reference puller, which
// carries every field.
func TestLocal(t *testing.T) {
	pullertest.Run(t, pullertest.Config{
		Dir:       t.TempDir(),
		NewPuller: func() pullers.Puller { return local.New() },
		SourceFor: func(dir string) pullers.Source {
			return pullers.Source{Method: local.Method, Name: "src", Path: dir}
		},
		Caps:    localCaps(),
		Options: pullertest.Options{Large: pullertest.LargeFromEnv()},
	})
}

// localCaps is LocalCaps minus DeepPaths: pullers/local's incremental
// skip reads xattrs by full path (xattrsPath), which fails with "file name
// too long" past 4096 bytes, so the second pull records an error on
// deep/…/bottom. Reported to the owner of pullers/local; drop this when
// it is fixed.
func localCaps() pullertest.Capabilities {
	c := pullertest.LocalCaps
	c.DeepPaths = false
	return c
}
