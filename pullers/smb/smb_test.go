package smb_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/smb"
)

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

func source(s *testenv.SambaServer, rel string) pullers.Source {
	return pullers.Source{Method: smb.Method, Name: "src", Path: rel,
		Options: map[string]string{"host": s.Host, "port": strconv.Itoa(s.Port), "user": s.User, "share": s.Share},
		Secret:  map[string]string{"password": s.Password}}
}

func TestConformance(t *testing.T) {
	s := testenv.Samba(t)
	pullertest.Run(t, pullertest.Config{
		Dir:       s.Dir,
		NewPuller: func() pullers.Puller { return smb.New() },
		SourceFor: func(dir string) pullers.Source { return source(s, "scenario") },
		Caps:      pullertest.SMBCaps,
	})
}

func TestRegisteredAndWrongPassword(t *testing.T) {
	p, err := pullers.Get(smb.Method)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*smb.Puller); !ok {
		t.Fatalf("Get(%q) = %T", smb.Method, p)
	}
	s := testenv.Samba(t)
	src := source(s, "")
	src.Secret["password"] = "wrong"
	w, err := pullertest.NewPool(t).NewWriter(context.Background(), pool.SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	err = smb.New().Pull(context.Background(), &pullers.Job{Source: src, Sink: w})
	if !errors.Is(err, smb.ErrAuth) || !errors.Is(err, pullers.ErrPermanent) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	t.Log(err)
}
