package sftp_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/sftp"
)

func TestMain(m *testing.M) {
	testenv.KillLeftovers()
	os.Exit(m.Run())
}

func keySource(t *testing.T, s *testenv.SSHServer, dir string) pullers.Source {
	t.Helper()
	key, err := os.ReadFile(s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pullers.Source{Method: sftp.Method, Name: "src", Path: dir,
		Options: map[string]string{"host": s.Host, "port": strconv.Itoa(s.Port), "user": s.User,
			"host_key": sftp.HostKeyString(s.HostKey)},
		Secret: map[string]string{"private_key": string(key)}}
}

func TestConformance(t *testing.T) {
	s := testenv.SSHD(t)
	pullertest.Run(t, pullertest.Config{
		Dir:       s.Dir,
		NewPuller: func() pullers.Puller { return sftp.New() },
		SourceFor: func(dir string) pullers.Source { return keySource(t, s, dir) },
		Caps:      pullertest.SFTPCaps,
		Options:   pullertest.Options{Large: pullertest.LargeFromEnv()},
	})
}

func TestRegistered(t *testing.T) {
	p, err := pullers.Get(sftp.Method)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*sftp.Puller); !ok {
		t.Fatalf("Get(%q) = %T", sftp.Method, p)
	}
}

// TestLogin: password auth, trust on first use, a changed key, refused
// credentials.
func TestLogin(t *testing.T) {
	s := testenv.SSHD(t)
	if err := os.WriteFile(s.Dir+"/f", []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := pullertest.NewPool(t)
	ctx := context.Background()
	pull := func(src pullers.Source) (*sftp.Puller, *pool.Manifest, error) {
		pl := sftp.New()
		w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "s"})
		if err != nil {
			t.Fatal(err)
		}
		if err := pl.Pull(ctx, &pullers.Job{Source: src, Sink: w}); err != nil {
			w.Abort()
			return pl, nil, err
		}
		m, err := w.Finish(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return pl, m, nil
	}

	t.Run("tofu", func(t *testing.T) {
		src := keySource(t, s, s.Dir)
		delete(src.Options, "host_key")
		pl, m, err := pull(src)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := pl.SeenHostKey(), sftp.HostKeyString(s.HostKey); got != want {
			t.Errorf("SeenHostKey = %q, want %q", got, want)
		}
		if m.Files != 1 || m.Status != pool.StatusComplete {
			t.Errorf("manifest %+v", m)
		}
	})
	t.Run("password", func(t *testing.T) {
		if s.Password == "" {
			if os.Getenv("CI") == "true" {
				t.Fatal("testenv.SSHD has no password auth")
			}
			t.Skip("testenv.SSHD has no password auth here")
		}
		src := keySource(t, s, s.Dir)
		src.Secret = map[string]string{"password": s.Password}
		if _, _, err := pull(src); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("changed-host-key", func(t *testing.T) {
		src := keySource(t, s, s.Dir)
		other := testenv.SSHD(t) // another server, another key
		src.Options["host_key"] = sftp.HostKeyString(other.HostKey)
		_, _, err := pull(src)
		if !errors.Is(err, sftp.ErrHostKeyChanged) || !errors.Is(err, pullers.ErrPermanent) {
			t.Fatalf("err = %v, want ErrHostKeyChanged (permanent)", err)
		}
		for _, fp := range []string{fingerprint(t, s), fingerprint(t, other)} {
			if !strings.Contains(err.Error(), fp) {
				t.Errorf("error %q does not name fingerprint %s", err, fp)
			}
		}
	})
	t.Run("wrong-password", func(t *testing.T) {
		src := keySource(t, s, s.Dir)
		src.Secret = map[string]string{"password": "wrong"}
		start := time.Now()
		_, _, err := pull(src)
		if !errors.Is(err, sftp.ErrAuth) || !errors.Is(err, pullers.ErrPermanent) {
			t.Fatalf("err = %v, want ErrAuth (permanent)", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("the error shows the password: %v", err)
		}
		t.Logf("refused after %v: %v", time.Since(start), err)
	})
	t.Run("wrong-key", func(t *testing.T) {
		src := keySource(t, s, s.Dir)
		other := testenv.SSHD(t)
		key, err := os.ReadFile(other.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		src.Secret = map[string]string{"private_key": string(key)}
		if _, _, err := pull(src); !errors.Is(err, sftp.ErrAuth) {
			t.Fatalf("err = %v, want ErrAuth", err)
		}
	})
}

func fingerprint(t *testing.T, s *testenv.SSHServer) string { return sshFingerprint(s) }
