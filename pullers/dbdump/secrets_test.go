package dbdump

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/pullers"
)

// fakeTool writes a script that prints its arguments, its environment
// and the mode of the credential file it was given, so a test can see
// exactly what a dump tool receives.
func fakeTool(t *testing.T, dir, name string) {
	t.Helper()
	script := `#!/bin/sh
echo "ARGS: $*"
env | sed 's/^/ENV: /'
for a in "$@"; do
  case "$a" in --defaults-file=*) f="${a#--defaults-file=}";; esac
done
[ -n "$PGPASSFILE" ] && f="$PGPASSFILE"
echo "MODE: $(stat -c %a "$f")"
echo "FILE: $f"
cat "$f" | sed 's/^/CRED: /'
`
	must(t, os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755))
}

// TestSecretsNeverOnCommandLine: the password reaches the tools only
// through a 0600 file (pgpass / --defaults-file) that is gone after the
// pull; neither argv nor the environment holds it.
func TestSecretsNeverOnCommandLine(t *testing.T) {
	const pw = "pa:ss\\w\"ord"
	for _, c := range []struct {
		pl   *Puller
		tool string
		cred string
	}{
		{NewPostgres(), "pg_dump", `CRED: db.example:5432:*:backup:pa\:ss\\w"ord`},
		{NewMariaDB(), "mariadb-dump", `CRED: password="pa:ss\\w\"ord"`},
	} {
		t.Run(c.tool, func(t *testing.T) {
			bin := t.TempDir()
			fakeTool(t, bin, c.tool)
			spool := t.TempDir()
			p := newPool(t)
			src := pullers.Source{Options: map[string]string{"host": "db.example", "user": "backup",
				"databases": "appdb", "globals": "false", "bin_dir": bin, "spool_dir": spool},
				Secret: map[string]string{"password": pw}}
			m, err := pull(t, p, c.pl, src)
			must(t, err)
			out := string(readFile(t, p, m, "appdb.sql"))
			var credFile string
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "ARGS: ") || strings.HasPrefix(line, "ENV: ") {
					if strings.Contains(line, "pa:ss") {
						t.Errorf("the password is visible to other processes: %q", line)
					}
				}
				if f, ok := strings.CutPrefix(line, "FILE: "); ok {
					credFile = f
				}
			}
			if !strings.Contains(out, "MODE: 600\n") || !strings.Contains(out, c.cred+"\n") {
				t.Errorf("tool saw:\n%s", out)
			}
			if _, err := os.Stat(credFile); !os.IsNotExist(err) {
				t.Errorf("credential file %q left behind: %v", credFile, err)
			}
			if ents, _ := os.ReadDir(spool); len(ents) != 0 {
				t.Errorf("spool dir not empty after the pull: %v", ents)
			}
		})
	}
}

// TestFailingToolKeepsNothing: a tool that writes part of a dump and
// exits non-zero fails the pull with its stderr tail (secret masked), and
// nothing of that dump reaches the sink.
func TestFailingToolKeepsNothing(t *testing.T) {
	bin := t.TempDir()
	must(t, os.WriteFile(filepath.Join(bin, "pg_dump"), []byte("#!/bin/sh\necho 'CREATE TABLE half'\necho 'pg_dump: error: connection lost; password TopSecret99 rejected' >&2\nexit 1\n"), 0o755))
	p := newPool(t)
	ctx := context.Background()
	w, err := p.NewWriter(ctx, poolMeta())
	must(t, err)
	defer w.Abort()
	err = NewPostgres().Pull(ctx, &pullers.Job{Host: "h", Sink: w, Source: pullers.Source{
		Options: map[string]string{"databases": "appdb", "globals": "false", "bin_dir": bin},
		Secret:  map[string]string{"password": "TopSecret99"}}})
	if err == nil || !strings.Contains(err.Error(), "connection lost") || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("Pull = %v", err)
	}
	if strings.Contains(err.Error(), "TopSecret99") {
		t.Errorf("secret in %v", err)
	}
	if st := w.Stats(); st.Files != 0 || st.Bytes != 0 {
		t.Errorf("a failed dump reached the sink: %+v", st)
	}
}
