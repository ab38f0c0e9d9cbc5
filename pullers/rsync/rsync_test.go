package rsync_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
	"github.com/cairn-backup/cairn/pullers/rsync"
)

// caps is what protocol 31 with -X carries (CAPABILITIES.md).
var caps = pullertest.Capabilities{Mode: true, Owner: true, MtimeRes: time.Nanosecond, DirMtime: true,
	Symlinks: true, HardLinks: true, AllNames: true, Xattrs: true}

// caps27 is what protocol 27 carries: whole seconds, no xattrs.
var caps27 = func() pullertest.Capabilities { c := caps; c.MtimeRes = time.Second; c.Xattrs = false; return c }()

// sshCaps: over SSH the sender maps ids to names (the daemon in testenv
// has "numeric ids = yes").
var sshCaps = func() pullertest.Capabilities { c := caps; c.OwnerNames = true; return c }()

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
		Options: map[string]string{"host": s.Host, "port": strconv.Itoa(s.Port), "module": module, "xattrs": "true", "acls": "true"}}
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

// TestConformanceDaemon27 runs the scenario at protocol 27, the fallback
// for senders older than rsync 3.0.
func TestConformanceDaemon27(t *testing.T) {
	s := testenv.Rsyncd(t)
	pullertest.Run(t, pullertest.Config{
		Dir:       s.Dir,
		NewPuller: func() pullers.Puller { return &rsync.Puller{Protocol: 27} },
		SourceFor: func(dir string) pullers.Source {
			src := daemonSource(s, s.Module, rel(t, s.Dir, dir))
			delete(src.Options, "xattrs")
			delete(src.Options, "acls")
			return src
		},
		Caps: caps27,
	})
}

func TestConformanceDaemonAuth(t *testing.T) {
	s := testenv.Rsyncd(t)
	pullertest.Run(t, pullertest.Config{
		Dir:       s.Dir,
		NewPuller: func() pullers.Puller { return rsync.New() },
		SourceFor: func(dir string) pullers.Source { return daemonSource(s, s.AuthModule, rel(t, s.Dir, dir)) },
		Caps:      caps,
	})
}

func pullOnce(t *testing.T, p *pool.Pool, pl *rsync.Puller, src pullers.Source, prev pullers.Previous) (*pool.Manifest, error) {
	t.Helper()
	ctx := context.Background()
	w, err := p.NewWriter(ctx, pool.SnapshotMeta{Host: "h", Source: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.Pull(ctx, &pullers.Job{Source: src, Sink: w, Previous: prev}); err != nil {
		w.Abort()
		return nil, err
	}
	m, err := w.Finish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m, nil
}

func TestDaemonAuthRefused(t *testing.T) {
	s := testenv.Rsyncd(t)
	if err := os.WriteFile(s.Dir+"/f", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := pullertest.NewPool(t)
	for name, mod := range map[string]func(*pullers.Source){
		"wrong password": func(src *pullers.Source) { src.Secret["password"] = "wrong" },
		"no password":    func(src *pullers.Source) { src.Secret = nil },
		"wrong user":     func(src *pullers.Source) { src.Options["user"] = "nobody" },
	} {
		t.Run(name, func(t *testing.T) {
			src := daemonSource(s, s.AuthModule, "/")
			mod(&src)
			_, err := pullOnce(t, p, rsync.New(), src, nil)
			if !errors.Is(err, rsync.ErrAuth) || !errors.Is(err, pullers.ErrPermanent) {
				t.Fatalf("pull with %s: %v, want ErrAuth", name, err)
			}
			t.Log(err)
		})
	}
	m, err := pullOnce(t, p, rsync.New(), daemonSource(s, s.AuthModule, "/"), nil)
	if err != nil || m.ErrorCount != 0 {
		t.Fatalf("correct password: %v %+v", err, m)
	}
	if _, err := pullOnce(t, p, rsync.New(), daemonSource(s, "nosuch", "/"), nil); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("unknown module: %v", err)
	}
}

func sshSource(t *testing.T, s *testenv.SSHServer, dir string) pullers.Source {
	t.Helper()
	key, err := os.ReadFile(s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pullers.Source{Method: rsync.Method, Name: "src", Path: dir,
		Options: map[string]string{"transport": "ssh", "host": s.Host, "port": strconv.Itoa(s.Port), "user": s.User,
			"host_key": string(ssh.MarshalAuthorizedKey(s.HostKey)), "xattrs": "true", "acls": "true"},
		Secret: map[string]string{"private_key": string(key)}}
}

func TestConformanceSSH(t *testing.T) {
	testenv.Need(t, "rsync")
	s := testenv.SSHD(t)
	pullertest.Run(t, pullertest.Config{
		Dir:       s.Dir,
		NewPuller: func() pullers.Puller { return rsync.New() },
		SourceFor: func(dir string) pullers.Source { return sshSource(t, s, dir) },
		Caps:      sshCaps,
	})
}

func TestSSHHostKeyChanged(t *testing.T) {
	testenv.Need(t, "rsync")
	s := testenv.SSHD(t)
	src := sshSource(t, s, s.Dir)
	src.Options["host_key"] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
	_, err := pullOnce(t, pullertest.NewPool(t), rsync.New(), src, nil)
	if !errors.Is(err, rsync.ErrHostKeyChanged) {
		t.Fatalf("pull with another pinned key: %v", err)
	}
}

// The appliance and the CLI give pullers a *pool.TreeLookup as Previous:
// it must also be a Basis, so rsync sends deltas.
var _ rsync.Basis = (*pool.TreeLookup)(nil)
