package pool_test

import (
	"testing"

	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pool/backendtest"
)

func TestDirBackendConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) pool.Backend { return newDir(t) })
}

func TestMemBackendConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) pool.Backend { return backendtest.NewMem() })
}
