package appliance

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestDAVSessionCookie: the web UI's session cookie opens the share too
// (so the web UI can link into it), with the same visibility.
func TestDAVSessionCookie(t *testing.T) {
	re := newRestoreEnv(t)
	alice, err := re.s.cat.User(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	re.s.ui.Sessions.Create(rec, httptest.NewRequest("POST", "/login", nil), alice.ID)
	cookies := rec.Result().Cookies()
	if len(cookies) == 0 {
		t.Fatal("no session cookie")
	}
	get := func(path string) (int, []byte) {
		req, _ := http.NewRequest("GET", re.srv.URL+path, nil)
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := get("/dav/www/latest/files/a.txt"); code != http.StatusOK || sha(b) != re.sums["a.txt"] {
		t.Fatalf("cookie GET: %d %q", code, b)
	}
	if code, _ := get("/dav/pg/latest/data/f000.txt"); code != http.StatusNotFound {
		t.Fatalf("cookie GET of a hidden host: %d, want 404", code)
	}
}

// TestDAVConcurrentClients: 32 clients download every file at once, as
// different principals, with no errors and the right digests.
func TestDAVConcurrentClients(t *testing.T) {
	re := newRestoreEnv(t)
	auths := []string{"alice:alice-secret-pw", "token:" + re.aliceTok, "boss:boss-secret-pw", "bearer:" + re.aliceTok}
	var wg sync.WaitGroup
	errs := make(chan error, 32*len(re.sums))
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			auth := auths[i%len(auths)]
			for name, want := range re.sums {
				req, _ := http.NewRequest("GET", re.srv.URL+"/dav/www/latest/files/"+name, nil)
				if tok, ok := strings.CutPrefix(auth, "bearer:"); ok {
					req.Header.Set("Authorization", "Bearer "+tok)
				} else {
					u, p, _ := strings.Cut(auth, ":")
					req.SetBasicAuth(u, p)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || sha(b) != want {
					errs <- fmt.Errorf("client %d %s: %d %v sha %s", i, name, resp.StatusCode, err, sha(b))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
