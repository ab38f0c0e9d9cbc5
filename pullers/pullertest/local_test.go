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
		Caps:    pullertest.LocalCaps,
		Options: pullertest.Options{Large: pullertest.LargeFromEnv()},
	})
}
