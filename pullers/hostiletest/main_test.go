package hostiletest

import (
	"os"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}
