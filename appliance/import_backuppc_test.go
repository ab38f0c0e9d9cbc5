package appliance

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// debianBackupPC returns the config files Debian's backuppc package
// installs (extracted by internal/testenv/install-deps.sh): config.pl
// (/usr/share/backuppc/conf/config.pl, which the package's postinst
// installs as /etc/backuppc/config.pl), hosts and localhost.pl.
func debianBackupPC(t *testing.T) map[string][]byte {
	t.Helper()
	root := filepath.Join(testenv.CacheDir(), "backuppc")
	out := map[string][]byte{}
	for name, p := range map[string]string{
		"config.pl":    "usr/share/backuppc/conf/config.pl",
		"hosts":        "etc/backuppc/hosts",
		"localhost.pl": "etc/backuppc/localhost.pl",
	} {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			msg := fmt.Sprintf("Debian's BackupPC config files: %v (run `make deps`: internal/testenv/install-deps.sh extracts them)", err)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		out[name] = b
	}
	return out
}

var bpcHostFiles = map[string]string{
	"pc/web1.pl": `# rsync daemon with auth, excludes per share, a keep ladder
$Conf{XferMethod} = 'rsyncd';
$Conf{RsyncShareName} = ['data', 'www/html'];
$Conf{RsyncdUserName} = 'backup';
$Conf{RsyncdPasswd} = 's3cret-web1';
$Conf{RsyncdClientPort} = 8873;
$Conf{ClientNameAlias} = '192.0.2.10';
$Conf{BackupFilesExclude} = { 'data' => ['/tmp', '*.o'], '*' => ['/cache'] };
$Conf{FullPeriod} = 6.97;
$Conf{IncrPeriod} = 0.97;
$Conf{FullKeepCnt} = [4, 2, 3];
$Conf{IncrKeepCnt} = 14;
$Conf{BlackoutPeriods} = [
    { hourBegin => 7.0, hourEnd => 19.5, weekDays => [1, 2, 3, 4, 5] },
    { hourBegin => 22,  hourEnd => 2,    weekDays => [5, 6] },
];
$Conf{PingMaxMsec} = 40;
`,
	"pc/fs1.pl": `$Conf{XferMethod} = 'rsync';
$Conf{RsyncShareName} = ['/', '/home'];
$Conf{BackupFilesExclude} = ['/proc', '/sys'];
$Conf{BackupFilesOnly} = { '/home' => ['/alice'] };
$Conf{FullPeriod} = 0.97;
$Conf{IncrPeriod} = 0.24;
`,
	"nas.pl": `$Conf{XferMethod} = 'smb';
$Conf{SmbShareName} = ['Documents', 'C$'];
$Conf{SmbShareUserName} = 'backup';
$Conf{SmbSharePasswd} = 'smb-pass';
$Conf{FullPeriod} = -1;
`,
	"pc/ftp1.pl": `$Conf{XferMethod} = 'ftp';
$Conf{FtpShareName} = '/pub';
$Conf{FtpUserName} = 'mirror';
$Conf{FtpPasswd} = 'ftp-pass';
$Conf{FullPeriod} = -2;
$Conf{ClientNameAlias} = ` + "`hostname`" + `;
`,
	"pc/old.pl":   "$Conf{XferMethod} = 'archive';\n",
	"pc/ghost.pl": "$Conf{XferMethod} = 'rsync';\n",
}

func bpcTar(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(files[n])
	}
	tw.Close()
	return buf.Bytes()
}

func TestImportBackupPC(t *testing.T) {
	files := debianBackupPC(t)
	files["hosts"] = append(files["hosts"], []byte("web1 0 alice bob,carol\nfs1 0\nnas 1 admin\nftp1 0\nold 0\n")...)
	for n, s := range bpcHostFiles {
		files[n] = []byte(s)
	}
	body := bpcTar(t, files)
	e := newEnv(t, Config{})
	e.addHost("old", nil)
	post := func(as, path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-tar")
		if as == "socket" {
			req = req.WithContext(context.WithValue(req.Context(), peerKey, peer{unix: true, uid: 0}))
		} else {
			req.Header.Set("Authorization", "Bearer "+as)
		}
		w := httptest.NewRecorder()
		e.s.Handler().ServeHTTP(w, req)
		return w
	}
	if w := post(e.user("op", "operator"), "/api/v1/import/backuppc"); w.Code != 403 {
		t.Fatalf("import as operator: %d %s", w.Code, w.Body)
	}
	admin := e.user("root2", "admin")
	dry := post(admin, "/api/v1/import/backuppc?dry_run=true")
	if dry.Code != 200 {
		t.Fatalf("dry run: %d %s", dry.Code, dry.Body)
	}
	if w := e.do("socket", "GET", "/api/v1/hosts/web1", nil); w.Code != 404 {
		t.Fatalf("dry run created web1: %d", w.Code)
	}
	w := post(admin, "/api/v1/import/backuppc")
	if w.Code != 200 {
		t.Fatalf("import: %d %s", w.Code, w.Body)
	}
	for _, secret := range []string{"s3cret-web1", "smb-pass", "ftp-pass"} {
		if strings.Contains(w.Body.String(), secret) || strings.Contains(dry.Body.String(), secret) || strings.Contains(e.logs.String(), secret) {
			t.Fatalf("answer or log shows the secret %q", secret)
		}
	}
	var res BackupPCImport
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, h := range res.Hosts {
		status[h.Name] = h.Status
	}
	wantStatus := map[string]string{"localhost": "created", "web1": "created", "fs1": "created", "nas": "created", "ftp1": "created",
		"old": "skipped: a host of this name exists; it was not changed"}
	if !reflect.DeepEqual(status, wantStatus) {
		t.Fatalf("statuses %v", status)
	}

	// What was created, read back through the API.
	type src struct{ name, method, path, excl, opts, keys string }
	type want struct {
		address string
		enabled bool
		sources []src
		scheds  string
		keep    RetentionBody
	}
	wantHosts := map[string]want{
		"localhost": {"", true, []src{{"etc", "tar", "/etc", "", "user=root", ""}},
			"0 1 * * * [Mon,Tue,Wed,Thu,Fri 07:00-19:30]", RetentionBody{Daily: 6, Weekly: 1}},
		"web1": {"192.0.2.10", true, []src{
			{"data", "rsync", "/", "/cache,/tmp,*.o", "module=data port=8873 transport=daemon user=backup", "password"},
			{"www_html", "rsync", "/html", "/cache", "module=www port=8873 transport=daemon user=backup", "password"}},
			"0 1 * * * [Mon,Tue,Wed,Thu,Fri 07:00-19:30 Fri,Sat 22:00-02:00]", RetentionBody{Daily: 14, Weekly: 8, Monthly: 3}},
		"fs1": {"", true, []src{
			{"home", "rsync", "/home", "/proc,/sys", "transport=ssh user=root", ""},
			{"root", "rsync", "/", "/proc,/sys", "transport=ssh user=root", ""}},
			"0 */6 * * * [Mon,Tue,Wed,Thu,Fri 07:00-19:30]", RetentionBody{Daily: 3}},
		"nas": {"", true, []src{
			{"C", "smb", "/", "", "share=C$ user=backup", "password"},
			{"Documents", "smb", "/", "", "share=Documents user=backup", "password"}},
			"", RetentionBody{Daily: 6}},
		"ftp1": {"", false, []src{{"pub", "ftp", "/pub", "", "user=mirror", "password"}}, "", RetentionBody{Daily: 6}},
		"old":  {"", true, []src{{"data", fakeMethod, "/fake", "", "", ""}}, "", RetentionBody{}}, // untouched
	}
	for name, wh := range wantHosts {
		var hb HostBody
		e.must("socket", "GET", "/api/v1/hosts/"+name, nil, &hb)
		var got []src
		for _, s := range hb.Sources {
			var opts []string
			for k, v := range s.Options {
				opts = append(opts, k+"="+v)
			}
			sort.Strings(opts)
			got = append(got, src{s.Name, s.Method, s.Path, strings.Join(s.Excludes, ","), strings.Join(opts, " "), strings.Join(s.SecretKeys, ",")})
		}
		sort.Slice(got, func(i, j int) bool { return got[i].name < got[j].name })
		var scheds []string
		for _, sc := range hb.Schedules {
			scheds = append(scheds, fmt.Sprintf("%s %v", sc.Cron, sc.Blackout))
		}
		if hb.Address != wh.address || hb.Enabled != wh.enabled || !reflect.DeepEqual(got, wh.sources) ||
			strings.Join(scheds, "; ") != wh.scheds || hb.Retention != wh.keep {
			t.Errorf("host %s:\n got %q %v %+v %q %+v\nwant %q %v %+v %q %+v", name, hb.Address, hb.Enabled, got, strings.Join(scheds, "; "), hb.Retention,
				wh.address, wh.enabled, wh.sources, wh.scheds, wh.keep)
		}
	}
	// Credentials are stored sealed, and open to the BackupPC values.
	h, err := e.s.cat.Host(context.Background(), "web1")
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := e.s.cat.Sources(context.Background(), h.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, sr := range srcs {
		if bytes.Contains(sr.Secret, []byte("s3cret-web1")) {
			t.Fatalf("source %s: secret stored in clear", sr.Name)
		}
		sec, err := e.s.openSecret(sr.Secret)
		if err != nil || sec["password"] != "s3cret-web1" || len(sec) != 1 {
			t.Fatalf("source %s: secret %v %v", sr.Name, len(sec), err)
		}
	}

	// Everything not mapped is listed: per host, precisely ...
	var perHost, global []string
	for _, n := range res.Unmapped {
		if n.File == "config.pl" {
			global = append(global, n.String())
		} else {
			perHost = append(perHost, n.String())
		}
	}
	wantPerHost := []string{
		"localhost.pl:8: host localhost: TarClientCmd = '/usr/bin/env LC_ALL=C $tarPath -c -v -f - -C $shareName --totals': no Cairn equivalent",
		"localhost.pl:13: host localhost: TarFullArgs = '$fileList': no Cairn equivalent",
		"localhost.pl:14: host localhost: TarIncrArgs = '--newer=$incrDate $fileList': no Cairn equivalent",
		"hosts:57: host localhost: hosts:user = backuppc: give these users access through a Cairn group",
		"pc/web1.pl:17: host web1: PingMaxMsec = 40: no Cairn equivalent",
		"hosts:58: host web1: hosts:user = alice,bob,carol: give these users access through a Cairn group",
		"pc/fs1.pl:4: host fs1: BackupFilesOnly = {'/home' => ['/alice']}: Cairn sources have excludes only; add a source per included directory",
		"hosts:60: host nas: hosts:dhcp = 1: Cairn reaches a host by its address or name; BackupPC's NetBIOS lookup of DHCP hosts is not done",
		"hosts:60: host nas: hosts:user = admin: give these users access through a Cairn group",
		"pc/old.pl:1: host old: XferMethod = 'archive': transfer method \"archive\" has no Cairn equivalent; the host gets no sources",
		"pc/ghost.pl: pc/ghost.pl: a per-host file for a host not in the hosts file; not read",
	}
	if !reflect.DeepEqual(perHost, wantPerHost) {
		t.Errorf("unmapped per host:\n%s", strings.Join(perHost, "\n"))
	}
	// ... and every config.pl setting the import does not read: the 156
	// settings Debian's config.pl sets, less the 21 mapped ones it has.
	if len(global) != 135 {
		t.Errorf("%d config.pl settings listed as unmapped, want 135", len(global))
	}
	for _, w := range []string{
		"config.pl:135: MaxBackups = 4: no Cairn equivalent",
		"config.pl:601: FullKeepCntMin = 1: no Cairn equivalent",
		"config.pl:786: BlackoutGoodCnt = 7: no Cairn equivalent",
	} {
		if !slicesContains(global, w) {
			t.Errorf("unmapped lacks %q", w)
		}
	}
	wantApprox := []string{
		"pc/web1.pl:11: host web1: FullKeepCnt = [4, 2, 3]: keep counts mapped to periods: 2 every 13.94 days kept as weekly 4",
		"config.pl:618: host fs1: IncrKeepCnt = 6: keep counts mapped to periods: 6 every 0.24 days kept as daily 2",
		"nas.pl:5: host nas: FullPeriod = -1: no automatic backups: the host gets no schedule (backups run on demand)",
		"pc/ftp1.pl:5: host ftp1: FullPeriod = -2: backups disabled: the host is created disabled",
	}
	for _, w := range wantApprox {
		found := false
		for _, n := range res.Approximations {
			found = found || n.String() == w
		}
		if !found {
			t.Errorf("approximations lack %q", w)
		}
	}
	// Perl beyond the subset: reported with file:line, never run.
	wantErrs := []string{
		"config.pl:44: not a $Conf{Name} = VALUE; statement: $ENV{'PATH'} = '/bin:/usr/bin';",
		"config.pl:45: not a $Conf{Name} = VALUE; statement: delete @ENV{'IFS', 'CDPATH', 'ENV', 'BASH_ENV'};",
		"config.pl:46: commands in backticks are never run: $Conf{ServerHost} = `hostname`;",
		"config.pl:47: not a $Conf{Name} = VALUE; statement: chomp($Conf{ServerHost});",
		"config.pl:309: $Conf{ParPath}: want ';' after the value (an expression beyond the supported subset?): $Conf{ParPath}   = '/usr/bin/par2' if -x '/usr/bin/par2';",
		"config.pl:1585: $Conf{SshPath}: want ';' after the value (an expression beyond the supported subset?): $Conf{SshPath} = '/usr/bin/ssh' if -x '/usr/bin/ssh';",
		"config.pl:2037: heredocs are not supported: $Conf{EMailHeaders} = <<EOF;",
		"config.pl:2104: references to other variables are not evaluated: $Conf{CgiURL} = 'http://'.$Conf{ServerHost}.'/backuppc/index.cgi';",
		"pc/ftp1.pl:6: commands in backticks are never run: $Conf{ClientNameAlias} = `hostname`;",
	}
	if !reflect.DeepEqual(res.ParseErrors, wantErrs) {
		t.Errorf("parse errors:\n%s", strings.Join(res.ParseErrors, "\n"))
	}

	// A second import changes nothing: every host exists.
	w = post(admin, "/api/v1/import/backuppc")
	var again BackupPCImport
	if err := json.Unmarshal(w.Body.Bytes(), &again); err != nil || w.Code != 200 {
		t.Fatalf("second import: %d %s", w.Code, w.Body)
	}
	for _, h := range again.Hosts {
		if !strings.HasPrefix(h.Status, "skipped: ") {
			t.Errorf("second import: host %s %s", h.Name, h.Status)
		}
	}
}

func TestImportBackupPCRefuses(t *testing.T) {
	e := newEnv(t, Config{})
	admin := e.user("root2", "admin")
	post := func(ctype string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/api/v1/import/backuppc", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Authorization", "Bearer "+admin)
		w := httptest.NewRecorder()
		e.s.Handler().ServeHTTP(w, req)
		return w
	}
	for _, c := range []struct {
		name, ctype string
		body        []byte
		want        string
	}{
		{"no hosts file", "application/x-tar", bpcTar(t, map[string][]byte{"config.pl": []byte("$Conf{A} = 1;")}), "no hosts file"},
		{"not a tar", "application/x-tar", []byte("garbage that is not a tar archive at all, repeated until long enough to fill a block"), "want a tar"},
		{"escaping name", "application/x-tar", bpcTar(t, map[string][]byte{"../hosts": []byte("x 0")}), "must be relative"},
	} {
		w := post(c.ctype, c.body)
		if w.Code != 400 || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%s: %d %s", c.name, w.Code, w.Body)
		}
	}
	// multipart works too; an smb host without a user gets no source, said so.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	fw, _ := mw.CreateFormFile("hosts", "hosts")
	fw.Write([]byte("win7 0\n"))
	mw.Close()
	w := post(mw.FormDataContentType(), mp.Bytes())
	var res BackupPCImport
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || w.Code != 200 {
		t.Fatalf("multipart: %d %s", w.Code, w.Body)
	}
	if len(res.Hosts) != 1 || res.Hosts[0].Status != "created" || len(res.Hosts[0].Sources) != 0 {
		t.Fatalf("win7: %+v", res.Hosts)
	}
	wantNote := `host win7: SmbShareName: source C not created: source C: method smb needs the option "user"`
	found := false
	for _, n := range res.Unmapped {
		found = found || n.String() == wantNote
	}
	if !found {
		t.Fatalf("win7: no note %q in %+v", wantNote, res.Unmapped)
	}
}
