package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// TestTokenExpiresCLI: token create --expires (lifetime or RFC 3339 time)
// sets the expiry the appliance stores; token ls shows it (EXPIRES, never
// for none); a bad --expires is refused before anything is asked.
func TestTokenExpiresCLI(t *testing.T) {
	testenv.NeedRoot(t, "needs root for the socket")
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	startServe(t, data)
	pw := filepath.Join(tmp, "pw")
	os.WriteFile(pw, []byte("correct horse battery\n"), 0o600)
	mustCLI(t, data, "user", "add", "alice", "--role", "operator", "--password-file", pw)

	before := time.Now()
	out, errOut, code := cairnCLI(t, data, "token", "create", "month", "--user", "alice", "--expires", "30d")
	if code != 0 || !strings.HasPrefix(strings.TrimSpace(out), "cairn_") || !strings.Contains(errOut, ", expires ") {
		t.Fatalf("token create --expires 30d: exit %d %q %q", code, out, errOut)
	}
	after := time.Now()
	mustCLI(t, data, "token", "create", "dated", "--user", "alice", "--expires", "2031-02-03T04:05:06Z")
	if _, errOut, _ := cairnCLI(t, data, "token", "create", "plain", "--user", "alice"); !strings.Contains(errOut, "never expires") {
		t.Fatalf("token create without --expires said %q", errOut)
	}
	for _, bad := range []string{"soon", "-3d", "0h", "2031-02-30"} {
		_, errOut, code := cairnCLI(t, data, "token", "create", "bad", "--user", "alice", "--expires", bad)
		if code == 0 || !strings.Contains(errOut, "--expires \""+bad+"\"") {
			t.Errorf("--expires %s: exit %d %q", bad, code, errOut)
		}
	}

	var toks []struct {
		Name    string
		Expires *time.Time
	}
	json.Unmarshal([]byte(mustCLI(t, data, "token", "ls", "--json")), &toks)
	if len(toks) != 3 || toks[0].Name != "month" || toks[1].Name != "dated" || toks[2].Name != "plain" {
		t.Fatalf("token ls: %+v", toks)
	}
	month := 30 * 24 * time.Hour
	if e := toks[0].Expires; e == nil || e.Before(before.Add(month).Truncate(time.Second)) || e.After(after.Add(month)) {
		t.Fatalf("30d token expires %v, want within [%s, %s]", e, before.Add(month), after.Add(month))
	}
	if e := toks[1].Expires; e == nil || !e.Equal(time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)) {
		t.Fatalf("dated token expires %v", e)
	}
	if toks[2].Expires != nil {
		t.Fatalf("plain token expires %v", toks[2].Expires)
	}
	table := strings.Split(strings.TrimSpace(mustCLI(t, data, "token", "ls")), "\n")
	if len(table) != 4 || !strings.Contains(table[0], "EXPIRES") ||
		!strings.Contains(table[1], toks[0].Expires.Local().Format("2006-01-02 15:04:05")) ||
		!strings.Contains(table[2], time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC).Local().Format("2006-01-02 15:04:05")) ||
		!strings.HasSuffix(strings.TrimSpace(table[3]), "never") {
		t.Fatalf("token ls:\n%s", strings.Join(table, "\n"))
	}
}
