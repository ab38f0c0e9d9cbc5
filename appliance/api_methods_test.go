package appliance

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/cairn-backup/cairn/pullers"
)

// Every option and credential a puller's doc.go names is in GET
// /api/v1/methods, so the host form can show it.
func TestMethodFieldsDocumented(t *testing.T) {
	e := newEnv(t, Config{})
	var ms []MethodBody
	e.must("socket", "GET", "/api/v1/methods", nil, &ms)
	byName := map[string]MethodBody{}
	for _, m := range ms {
		byName[m.Name] = m
	}
	docs := map[string]string{"local": "local", "sftp": "sftp", "smb": "smb", "ftp": "ftp", "rsync": "rsync", "tar": "tar",
		"postgres": "dbdump", "mariadb": "dbdump"}
	re := regexp.MustCompile(`(?:Options|Secret)?\["([a-z_]+)"\]`)
	for method, dir := range docs {
		m, ok := byName[method]
		if !ok {
			t.Fatalf("GET /api/v1/methods lacks %s: %+v", method, ms)
		}
		b, err := os.ReadFile(filepath.Join("..", "pullers", dir, "doc.go"))
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]MethodField{}
		for _, f := range m.Options {
			if f.Name == "" || f.Label == "" || f.Type == "" {
				t.Errorf("%s: incomplete field %+v", method, f)
			}
			if f.Type == "choice" && len(f.Choices) == 0 {
				t.Errorf("%s %s: a choice without choices", method, f.Name)
			}
			have[f.Name] = f
		}
		for _, sm := range re.FindAllStringSubmatch(string(b), -1) {
			name := sm[1]
			if _, ok := have[name]; !ok {
				t.Errorf("%s: pullers/%s/doc.go names %q, GET /api/v1/methods does not", method, dir, name)
			}
		}
		for _, secret := range []string{"password", "private_key", "ssh_private_key", "jump_password"} {
			if f, ok := have[secret]; ok && !f.Secret {
				t.Errorf("%s: %s is not marked secret", method, secret)
			}
		}
		if method != "local" {
			for _, common := range []string{"pre", "post", "ssh_host_key", "snapshot", "jump", "jump_host_key"} {
				if _, ok := have[common]; !ok {
					t.Errorf("%s: appliance option %s missing", method, common)
				}
			}
		}
	}
	// The form's required fields match what validation refuses.
	for method, keys := range requiredOptions {
		for _, k := range keys {
			if i := slices.IndexFunc(byName[method].Options, func(f MethodField) bool { return f.Name == k }); i < 0 || !byName[method].Options[i].Required {
				t.Errorf("%s: option %s is required by validation but not in the form", method, k)
			}
		}
	}
	if len(pullers.Methods()) != len(ms) {
		t.Errorf("%d methods registered, %d listed", len(pullers.Methods()), len(ms))
	}
}

// An edit that leaves a credential empty keeps the stored one; one that
// gives a new value replaces it; one that leaves it out removes it.
func TestHostPatchKeepsSecrets(t *testing.T) {
	e := newEnv(t, Config{})
	name := "nas"
	src := func(sec map[string]string) []SourceInput {
		return []SourceInput{{Name: "share", Method: "smb", Path: "/", Options: map[string]string{"share": "data", "user": "backup"}, Secret: sec}}
	}
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: src(map[string]string{"password": "first-S3cret", "extra": "x1"})}, nil)
	stored := func() map[string]string {
		t.Helper()
		h, err := e.s.cat.Host(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		ss, err := e.s.cat.Sources(context.Background(), h.ID)
		if err != nil || len(ss) != 1 {
			t.Fatalf("sources %v %v", ss, err)
		}
		if len(ss[0].Secret) == 0 {
			return map[string]string{}
		}
		m, err := e.s.openSecret(ss[0].Secret)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	// Empty password: kept (and smb's required password passes validation).
	var hb HostBody
	e.must("socket", "PATCH", "/api/v1/hosts/nas", HostInput{Sources: src(map[string]string{"password": "", "extra": "", "new": ""})}, &hb)
	if got := stored(); got["password"] != "first-S3cret" || got["extra"] != "x1" || len(got) != 2 {
		t.Fatalf("after an edit with empty credentials: %v", got)
	}
	if !slices.Equal(hb.Sources[0].SecretKeys, []string{"extra", "password"}) {
		t.Fatalf("secret keys shown %v", hb.Sources[0].SecretKeys)
	}
	// A new value replaces; a left-out key is removed.
	e.must("socket", "PATCH", "/api/v1/hosts/nas", HostInput{Sources: src(map[string]string{"password": "second-S3cret"})}, nil)
	if got := stored(); got["password"] != "second-S3cret" || len(got) != 1 {
		t.Fatalf("after an edit with a new password: %v", got)
	}
	// Another method under the same source name keeps nothing: smb
	// without its password is refused.
	w := e.do("socket", "PATCH", "/api/v1/hosts/nas", HostInput{Sources: []SourceInput{{Name: "share", Method: "ftp", Path: "/", Secret: map[string]string{"password": ""}}}})
	if w.Code != 200 {
		t.Fatalf("switch to ftp: %d %s", w.Code, w.Body.String())
	}
	if got := stored(); len(got) != 0 {
		t.Fatalf("credentials carried over to another method: %v", got)
	}
	w = e.do("socket", "PATCH", "/api/v1/hosts/nas", HostInput{Sources: src(map[string]string{"password": ""})})
	if w.Code != 400 || !regexp.MustCompile(`needs the credential \\"password\\"`).MatchString(w.Body.String()) {
		t.Fatalf("smb without a stored password: %d %s", w.Code, w.Body.String())
	}
}
