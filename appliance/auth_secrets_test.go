package appliance

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// secretForms is every way a secret could show up unencrypted: plain, hex,
// and base64 (standard and URL alphabets) at each of the three byte
// alignments, minus the edge characters that depend on neighbours.
func secretForms(s string) []string {
	out := []string{s, hex.EncodeToString([]byte(s))}
	for pad := range 3 {
		in := strings.Repeat("\x00", pad) + s
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			b := enc.EncodeToString([]byte(in))
			// Skip the chars that mix padding bytes in, and the tail.
			start := (pad*8 + 5) / 6
			end := len(strings.TrimRight(b, "=")) - 3
			if end-start >= 12 {
				out = append(out, b[start:end])
			}
		}
	}
	return out
}

// TestSecretsAtRest configures hosts with every kind of credential
// (an SSH private key, SSH passwords, a PostgreSQL password (spooled
// to a credential file in the data dir while the dump runs), a secret a
// failing puller echoes in its error), runs their backups, and then
// searches the whole data dir (catalog with its WAL, pool, spool files),
// the log and every API answer for each secret in plain, hex or base64.
// It finds none: credentials are sealed with the appliance key, and
// errors and logs never repeat them.
func TestSecretsAtRest(t *testing.T) {
	srv := testenv.SSHD(t)
	db := testenv.Postgres(t)
	dbPassword := "Pg-" + strconv.FormatInt(int64(os.Getppid()), 36) + "-database-secret"
	resetFake(t)
	releaseFake()
	e := newEnv(t, Config{GCSchedule: "-", CheckSchedule: "-"})
	dir := filepath.Join(srv.Dir, "data")
	fillTree(t, dir)

	key, err := os.ReadFile(srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	wrongPW := "Wr0ng-" + strconv.FormatInt(int64(os.Getpid()), 36) + "-sftp-passphrase"
	echoed := "Echoed-puller-secret-7f3a9c"
	secrets := map[string]string{"database password": dbPassword, "wrong sftp password": wrongPW, "echoed secret": echoed}
	// Every line of the private key's base64 body is a secret of its own.
	for i, line := range strings.Split(string(key), "\n") {
		if len(line) >= 40 && !strings.HasPrefix(line, "-----") {
			secrets[fmt.Sprintf("private key line %d", i)] = line
		}
	}
	if srv.Password != "" {
		secrets["sftp password"] = srv.Password
	}

	hosts := map[string]SourceInput{
		"sftpkey":   sftpSourceInput(t, srv, dir, nil),
		"sftpwrong": {Name: "data", Method: "sftp", Path: dir, Options: map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User}, Secret: map[string]string{"password": wrongPW}},
		"pg": {Name: "db", Method: "postgres", Path: "/", Options: map[string]string{"host": db.Host, "port": strconv.Itoa(db.Port), "user": db.User},
			Secret: map[string]string{"password": dbPassword}},
		"echo": {Name: "data", Method: fakeMethod, Path: "/x", Options: map[string]string{"fail": "could not log in with"}, Secret: map[string]string{"password": echoed}},
	}
	if srv.Password != "" {
		hosts["sftppw"] = SourceInput{Name: "data", Method: "sftp", Path: dir, Options: map[string]string{"host": srv.Host, "port": strconv.Itoa(srv.Port), "user": srv.User}, Secret: map[string]string{"password": srv.Password}}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("the test sshd has no password auth (see its log): the SSH password case cannot run")
	}
	want := map[string]string{"sftpkey": "done", "sftppw": "done", "pg": "done", "sftpwrong": "failed", "echo": "failed"}
	var apiOut bytes.Buffer
	for name, src := range hosts {
		e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{src}}, nil)
		j := e.waitJob(e.backup(name).ID)
		if j.State != want[name] {
			t.Errorf("backup of %s: %s %q, want %s", name, j.State, j.Error, want[name])
		}
		// A connection test exercises one more code path with the secret.
		apiOut.WriteString(e.do("socket", "POST", "/api/v1/hosts/"+name+"/test", nil).Body.String())
	}

	// Everything the API shows: every documented GET without parameters,
	// and the hosts, jobs (with their events) and snapshots.
	for _, rt := range documentedRoutes(t) {
		if rt.method == "GET" && !strings.Contains(rt.path, "{") {
			apiOut.WriteString(e.do("socket", "GET", rt.path, nil).Body.String())
		}
	}
	var jobs []JobBody
	e.must("socket", "GET", "/api/v1/jobs", nil, &jobs)
	for _, j := range jobs {
		apiOut.WriteString(e.do("socket", "GET", fmt.Sprintf("/api/v1/jobs/%d", j.ID), nil).Body.String())
	}
	for name := range hosts {
		for _, p := range []string{"", "/effective", "/retention"} {
			apiOut.WriteString(e.do("socket", "GET", "/api/v1/hosts/"+name+p, nil).Body.String())
		}
	}
	if apiOut.Len() < 2000 {
		t.Fatalf("only %d bytes of API output to search", apiOut.Len())
	}

	// The data dir, byte by byte (SQLite file, WAL and shm included). The
	// appliance's own keys (secret.key, its SSH key) are not configured
	// secrets and are skipped.
	e.s.Close() // checkpoint nothing: the WAL stays as it is on disk
	files := map[string][]byte{"API output": apiOut.Bytes(), "log": []byte(e.logs.String())}
	err = filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		switch d.Name() {
		case "secret.key", "ssh_ed25519_key", "ssh_ed25519_key.pub":
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[p] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files[filepath.Join(e.dir, "catalog.db")]; !ok {
		t.Fatalf("no catalog.db among %d files", len(files))
	}
	for what, s := range secrets {
		for _, form := range secretForms(s) {
			for f, b := range files {
				if bytes.Contains(b, []byte(form)) {
					t.Errorf("%s found in %s (as %q)", what, f, form)
				}
			}
		}
	}
	t.Logf("searched %d files and %d bytes of API output for %d secrets", len(files), apiOut.Len(), len(secrets))
}

// TestSecretFormsFindEmbedded: the search forms find a secret inside a
// longer base64 or hex stream at any offset (so the test above can fail).
func TestSecretFormsFindEmbedded(t *testing.T) {
	const s = "correct horse battery staple"
	for pre := range 5 {
		raw := strings.Repeat("p", pre) + s + "suffix"
		for _, enc := range []string{raw, base64.StdEncoding.EncodeToString([]byte(raw)),
			base64.RawURLEncoding.EncodeToString([]byte(raw)), hex.EncodeToString([]byte(raw))} {
			found := false
			for _, f := range secretForms(s) {
				found = found || strings.Contains(enc, f)
			}
			if !found {
				t.Errorf("prefix %d: %q not found", pre, enc)
			}
		}
	}
}
