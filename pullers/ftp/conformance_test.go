package ftp

import (
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/pullertest"
)

// ftpCaps is what FTP carries from vsftpd (see the package doc): LIST
// permission bits and numeric owners, file mtimes in seconds through MDTM
// (directories only to the minute, so DirMtime is off), symlinks as
// "name -> target". No hard links or xattrs; names are lines of a listing,
// so a name with a newline cannot be carried (every other name is);
// vsftpd works on full paths
// (no deep paths).
//
// MtimeRes is 0: symlinks' mtimes come from LIST only (MDTM follows the
// link), to the day for old entries. File mtimes to the second are checked
// in TestVsftpdAnonymous. Unreadable: vsftpd serves as its local user, not
// root, so the mode-0000 file is refused (550).
var ftpCaps = pullertest.Capabilities{Mode: true, Owner: true, Symlinks: true, Unreadable: true, AllNames: true}

// TestConformanceVsftpd runs the scenario over plain FTP and over
// explicit FTPS (certificate verified against the server's CA).
func TestConformanceVsftpd(t *testing.T) {
	srv := testenv.FTP(t)
	for _, mode := range []string{"plain", "ftps"} {
		t.Run(mode, func(t *testing.T) {
			base := filepath.Join(srv.UserDir, mode)
			must(t, os.Mkdir(base, 0o755))
			pullertest.Run(t, pullertest.Config{
				Dir:       base,
				NewPuller: func() pullers.Puller { return New() },
				SourceFor: func(dir string) pullers.Source {
					rel, err := filepath.Rel(srv.UserDir, dir)
					if err != nil || strings.HasPrefix(rel, "..") {
						t.Fatalf("scenario dir %s is not below %s", dir, srv.UserDir)
					}
					prepare(t, dir, srv.User)
					remountUnreadable(t, dir)
					o := map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User,
						"tls_ca": string(srv.CACertPEM), "tls_tofu": "false"}
					if mode == "plain" {
						o = map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User, "tls": "none"}
					}
					return pullers.Source{Method: Method, Name: "src", Path: "/" + filepath.ToSlash(rel),
						Options: o, Secret: map[string]string{"password": srv.Password}}
				},
				Caps:    ftpCaps,
				Options: pullertest.Options{Large: pullertest.LargeFromEnv()},
			})
		})
	}
}

// prepare adapts the generated tree to what FTP can serve: vsftpd reads
// as its local user, so the tree is given to that user (the comparison
// reads owners from the source afterwards); and a listing is lines of
// text, so the name and the symlink target that contain a newline are
// removed (what the parser does with such lines is covered by the
// hostile-server and fuzz tests).
func prepare(t *testing.T, dir, userName string) {
	u, err := user.Lookup(userName)
	must(t, err)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range []string{filepath.Join(dir, "names", "new\nline"), filepath.Join(dir, "links", "odd")} {
		if err := os.Remove(p); err != nil {
			t.Fatalf("prepare: %v", err)
		}
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // past PATH_MAX: vsftpd cannot go there anyway
		}
		os.Lchown(p, uid, gid)
		return nil
	})
}
