package web

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/internal/testenv"
)

// The setup's storage step with an S3 bucket of the real S3 test server,
// in the real binary: a wrong secret fails the check with the server's
// reason, the right one passes; the pool is created in the bucket and a
// first backup's objects land there.
func TestBrowserServeS3Setup(t *testing.T) {
	s3 := testenv.S3(t)
	b := startBrowser(t)
	data := t.TempDir()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello S3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, setupURL := startServe(t, data)
	b.navigate(setupURL)
	b.setValue("#password", goodPassword)
	b.setValue("#password2", goodPassword)
	b.submit("#setup-form")
	b.waitFor("storage step", `location.pathname === "/setup/storage" && document.body.dataset.ready === "1"`)
	b.eval(`document.querySelector("#st-kind-s3").click()`)
	b.setValue("#st-endpoint", s3.Endpoint)
	b.setValue("#st-bucket", s3.Bucket)
	b.setValue("#st-prefix", "cairn")
	b.setValue("#st-region", s3.Region)
	b.setValue("#st-access", s3.AccessKey)
	b.setValue("#st-secret", "wrong-"+s3.SecretKey)
	b.eval(`document.querySelector("#st-insecure").click(); document.querySelector("#st-test").click()`)
	b.waitFor("failed check", `document.querySelector("#st-test-result").textContent.startsWith("Failed: ")`)
	if txt := b.evalString(`document.querySelector("#st-test-result").textContent`); strings.Contains(txt, s3.SecretKey) {
		t.Fatalf("the check shows the secret: %q", txt)
	}
	b.setValue("#st-secret", s3.SecretKey)
	b.eval(`document.querySelector("#st-test").click()`)
	b.waitFor("passed check", `document.querySelector("#st-test-result").textContent.startsWith("OK: ")`)
	if txt := b.evalString(`document.querySelector("#st-test-result").textContent`); txt != "OK: s3://"+s3.Endpoint+"/"+s3.Bucket+"/cairn can hold the pool." {
		t.Fatalf("check %q", txt)
	}
	b.eval(`document.querySelector("#storage-form").requestSubmit()`)
	b.waitFor("pool created", `!document.querySelector("#st-done").hidden`)
	if txt := b.evalString(`document.querySelector("#pool-location").textContent + "|" + document.querySelector("#pool-enc").textContent`); txt != "s3://"+s3.Endpoint+"/"+s3.Bucket+"/cairn|not encrypted" {
		t.Fatalf("pool shown %q", txt)
	}
	// No key box for a plain pool; on to a backup of a local directory.
	if b.evalString(`String(document.querySelector("#st-key-box").hidden)`) != "true" {
		t.Fatal("key box shown for a plain pool")
	}
	b.eval(`document.querySelector("#st-next").click()`)
	b.waitFor("timezone step", `location.pathname === "/setup/timezone" && document.readyState === "complete"`)
	b.navigate(strings.SplitN(setupURL, "/setup", 2)[0] + "/hosts/new")
	b.waitFor("host form", `document.body.dataset.ready === "1"`)
	b.setValue("#f-name", "local1")
	b.setValue("#f-method", "local")
	b.setValue("#f-path", src)
	b.eval(`window.__cairnOld = true; document.querySelector("#host-form").requestSubmit()`)
	b.waitFor("host page", `!window.__cairnOld && location.pathname === "/hosts/local1" && document.body.dataset.ready === "1"`)
	b.eval(`document.querySelector("#run-now").click()`)
	b.waitFor("backup queued", `document.querySelector("#host-msg").innerText.includes("Backup queued as job")`)
	b.eval(`document.querySelector("#host-msg a").click()`)
	b.waitFor("backup done", `location.pathname.startsWith("/jobs/") && document.body.dataset.ready === "1" && /done|succeeded/.test(document.querySelector("#job-info").innerText)`)
	// The pool lives in the bucket: its identity and snapshot manifests.
	var names []string
	filepath.WalkDir(filepath.Join(s3.Dir, s3.Bucket, "cairn"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, strings.TrimPrefix(p, filepath.Join(s3.Dir, s3.Bucket, "cairn")+"/"))
		}
		return nil
	})
	joined := " " + strings.Join(names, " ")
	if !strings.Contains(joined, " cairn-pool.json") || !strings.Contains(joined, " snapshots/") {
		t.Fatalf("bucket holds %v", names)
	}
	if _, err := os.Stat(filepath.Join(data, "pool")); err == nil {
		if es, _ := os.ReadDir(filepath.Join(data, "pool", "snapshots")); len(es) > 0 {
			t.Fatalf("the snapshot went to the local pool: %v", es)
		}
	}
	if errs := b.consoleErrors(); len(errs) > 0 {
		t.Fatalf("console errors:\n%s", strings.Join(errs, "\n"))
	}
}
