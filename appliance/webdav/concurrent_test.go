package webdav

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
)

// TestConcurrentClients has 32 clients download whole files and ranges at
// once; every response must be complete and correct.
func TestConcurrentClients(t *testing.T) {
	m := testTree()
	srv := newServer(t, m, "/dav")
	data := m["web1/"+snap1+"/root/var/big.bin"].Data
	want := sum(data)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			for j := range 2 {
				req, _ := http.NewRequest("GET", srv.URL+"/dav/web1/"+snap1+"/root/var/big.bin", nil)
				if j == 1 {
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", i*1000, i*1000+65535))
				}
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					errs <- err
				case j == 1 && (resp.StatusCode != 206 || sum(b) != sum(data[i*1000:i*1000+65536])):
					errs <- fmt.Errorf("client %d range: %d, %d bytes", i, resp.StatusCode, len(b))
				case j != 1 && (resp.StatusCode != 200 || sum(b) != want):
					errs <- fmt.Errorf("client %d: %d, %d bytes", i, resp.StatusCode, len(b))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
