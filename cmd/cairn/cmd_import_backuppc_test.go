package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/appliance"
	"github.com/cairn-backup/cairn/internal/testenv"
)

func TestImportBackupPCCLI(t *testing.T) {
	testenv.NeedRoot(t, "needs root for the socket")
	tmp := t.TempDir()
	conf, data := filepath.Join(tmp, "backuppc"), filepath.Join(tmp, "data")
	os.MkdirAll(filepath.Join(conf, "pc"), 0o755)
	for name, s := range map[string]string{
		"hosts":     "host dhcp user moreUsers\nweb1 0 alice\n",
		"config.pl": "$Conf{IncrPeriod} = 0.97;\n$Conf{FullPeriod} = 6.97;\n$Conf{IncrKeepCnt} = 7;\n$Conf{FullKeepCnt} = 4;\n$Conf{MaxBackups} = 4;\n$Conf{TopDir} = `pwd`;\n",
		"pc/web1.pl": "$Conf{XferMethod} = 'rsyncd';\n$Conf{RsyncShareName} = ['data'];\n$Conf{RsyncdUserName} = 'backup';\n" +
			"$Conf{RsyncdPasswd} = 'cli-secret';\n$Conf{BlackoutPeriods} = [{hourBegin => 8, hourEnd => 17.25, weekDays => [1..5]}];\n",
	} {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	startServe(t, data)
	out := mustCLI(t, data, "import", "backuppc", "--dry-run", conf)
	if !strings.Contains(out, "dry run: nothing was created") || !strings.Contains(out, "host web1: planned") {
		t.Fatalf("dry run output:\n%s", out)
	}
	if _, _, code := cairnCLI(t, data, "host", "show", "web1"); code == 0 {
		t.Fatal("the dry run created web1")
	}
	out = mustCLI(t, data, "import", "backuppc", conf)
	for _, want := range []string{
		"host web1: created\n",
		"  source data: rsync / module=data transport=daemon user=backup credentials=password\n",
		"  schedule \"0 1 * * *\" blackout Mon,Tue,Wed,Thu,Fri 08:00-17:15\n",
		"  retention last=0 hourly=0 daily=7 weekly=4 monthly=0 yearly=0\n",
		"NOT MAPPED (2):\n",
		"  config.pl:5: MaxBackups = 4: no Cairn equivalent\n",
		"  hosts:2: host web1: hosts:user = alice: give these users access through a Cairn group\n",
		"NOT PARSED (never evaluated) (1):\n",
		"  config.pl:6: commands in backticks are never run: $Conf{TopDir} = `pwd`;\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cli-secret") {
		t.Fatal("the output shows the rsyncd password")
	}
	var hb appliance.HostBody
	if err := json.Unmarshal([]byte(mustCLI(t, data, "host", "show", "web1", "--json")), &hb); err != nil {
		t.Fatal(err)
	}
	if len(hb.Sources) != 1 || hb.Sources[0].Options["module"] != "data" || hb.Retention.Daily != 7 || hb.Retention.Weekly != 4 {
		t.Fatalf("web1 as stored: %+v", hb)
	}
	_, errOut, code := cairnCLI(t, data, "import", "backuppc", filepath.Join(tmp, "nosuch"))
	if code == 0 || !strings.Contains(errOut, "nosuch") || !strings.Contains(errOut, "hosts") {
		t.Fatalf("missing dir: exit %d %q", code, errOut)
	}
}
