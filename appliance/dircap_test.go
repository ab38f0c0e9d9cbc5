package appliance

import (
	"slices"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pullers"
	"github.com/cairn-backup/cairn/pullers/sftp"
	"github.com/cairn-backup/cairn/pullers/smb"
)

// TestMaxDirEntriesOption: max_dir_entries is checked when a source is
// added (400 naming the source, the option and the cause), refused for
// methods without per-directory listings, stored when good, listed in
// GET /api/v1/methods, and reaches the sftp and smb pullers' caps.
func TestMaxDirEntriesOption(t *testing.T) {
	e := newEnv(t, Config{})
	src := func(method, v string) SourceInput {
		o := map[string]string{"user": "u", "max_dir_entries": v}
		switch method {
		case "smb":
			o["share"] = "s"
		case "rsync":
			o["module"] = "m"
		}
		return SourceInput{Name: "data", Method: method, Path: "/d", Options: o, Secret: map[string]string{"password": "pw"}}
	}
	for _, tc := range []struct {
		in   SourceInput
		want string
	}{
		{src("sftp", "0"), `option max_dir_entries "0": want a positive number of names per directory`},
		{src("ftp", "-5"), `option max_dir_entries "-5"`},
		{src("local", "lots"), `option max_dir_entries "lots"`},
		{src("smb", "1.5"), `option max_dir_entries "1.5"`},
		{src("rsync", "10"), "method rsync has no per-directory listing to cap"},
		{src("tar", "10"), "method tar has no per-directory listing to cap"},
	} {
		name := "h"
		rec := e.do("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{tc.in}})
		if body := strings.ReplaceAll(rec.Body.String(), `\"`, `"`); rec.Code != 400 || !strings.Contains(body, "source data") || !strings.Contains(body, tc.want) {
			t.Errorf("%s max_dir_entries=%q: %d %s, want 400 naming %q", tc.in.Method, tc.in.Options["max_dir_entries"], rec.Code, body, tc.want)
		}
	}
	name := "h"
	e.must("socket", "POST", "/api/v1/hosts", HostInput{Name: &name, Sources: []SourceInput{src("sftp", "5000")}}, nil)
	var hb HostBody
	e.must("socket", "GET", "/api/v1/hosts/h", nil, &hb)
	if len(hb.Sources) != 1 || hb.Sources[0].Options["max_dir_entries"] != "5000" {
		t.Fatalf("stored source: %+v", hb.Sources)
	}

	var ms []MethodBody
	e.must("socket", "GET", "/api/v1/methods", nil, &ms)
	for _, m := range ms {
		has := false
		for _, f := range m.Options {
			if f.Name == "max_dir_entries" {
				has = f.Type == "number" && f.Group == "advanced" && f.Help != ""
			}
		}
		if want := m.Name != "archive" && slices.Contains(dirCapMethods, m.Name); has != want {
			t.Errorf("%s: max_dir_entries listed %v, want %v", m.Name, has, want)
		}
	}

	// The appliance sets the caps the sftp and smb pullers take as fields.
	for _, method := range []string{sftp.Method, smb.Method} {
		pl, err := pullers.Get(method)
		if err != nil {
			t.Fatal(err)
		}
		if err := applyDirCap(pl, method, map[string]string{"max_dir_entries": "1234"}); err != nil {
			t.Fatal(err)
		}
		got := 0
		switch p := pl.(type) {
		case *sftp.Puller:
			got = p.MaxEntries
		case *smb.Puller:
			got = p.MaxEntries
		}
		if got != 1234 {
			t.Errorf("%s: MaxEntries %d, want 1234", method, got)
		}
	}
	if err := applyDirCap(sftp.New(), "sftp", map[string]string{"max_dir_entries": "x"}); err == nil {
		t.Error("applyDirCap took a bad value")
	}
}
