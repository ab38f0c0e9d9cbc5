package torture

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// loadResult is bench/load.json.
type loadResult struct {
	When               time.Time          `json:"when"`
	Clients            int                `json:"clients"`
	Requests           map[string]int     `json:"requests"`
	Errors             int                `json:"errors"`
	LatencyMS          map[string]latency `json:"latency_ms"`
	BackupBytes        int64              `json:"backup_bytes"`
	BackupIdleSeconds  float64            `json:"backup_idle_seconds"`
	BackupLoadSeconds  float64            `json:"backup_load_seconds"`
	ThroughputIdleMBps float64            `json:"throughput_idle_mb_s"`
	ThroughputLoadMBps float64            `json:"throughput_load_mb_s"`
	ThroughputLossPct  float64            `json:"throughput_loss_pct"`
	Note               string             `json:"note"`
}

type latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func percentiles(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return latency{P50: ms(ds[len(ds)/2]), P99: ms(ds[min(len(ds)-1, len(ds)*99/100)]), Max: ms(ds[len(ds)-1])}
}

// TestLoad: many WebDAV and HTTP clients browse and download from an
// older snapshot while a backup runs: zero errors, every download has the
// bytes of the source. It reports p50/p99 latency of PROPFIND and GET
// and how much slower the backup ran than without load (written to
// bench/load.json under make torture, logged otherwise).
func TestLoad(t *testing.T) {
	clients := scale(t, 20, 50)
	tmp := t.TempDir()
	src, data := filepath.Join(tmp, "src"), filepath.Join(tmp, "data")
	writeSource(t, src, 0, 10, 40)
	files := map[string][]byte{}
	for d := range 10 {
		for f := range 40 {
			rel := fmt.Sprintf("d%02d/f%03d.txt", d, f)
			b, err := os.ReadFile(filepath.Join(src, rel))
			if err != nil {
				t.Fatal(err)
			}
			files[rel] = b
		}
	}
	p := startServe(t, data)
	mustCLI(t, data, "host", "add", "h1", "--method", "local", "--path", src, "--source", "files")
	api(t, data, "POST", "/api/v1/users", map[string]any{"name": "viewer", "password": "a long enough password 1", "role": "operator"}, &struct{}{})
	var tok struct {
		Token string `json:"token"`
	}
	api(t, data, "POST", "/api/v1/tokens", map[string]any{"name": "load", "user": "viewer"}, &tok)
	backup := func() (job, time.Duration) {
		var j struct {
			ID int64 `json:"id"`
		}
		start := time.Now()
		json.Unmarshal([]byte(mustCLI(t, data, "backup", "run", "h1", "--json")), &j)
		got := waitJob(t, data, j.ID, 10*time.Minute)
		if got.State != "done" {
			t.Fatalf("backup: %+v", got)
		}
		return got, time.Since(start)
	}
	backup()
	snap := snapshots(t, data)[0].ID

	// Each measured backup stores the same amount of new random data.
	const newBytes = 48 << 20
	addData := func(tag string) {
		big := make([]byte, 8<<20)
		for i := range newBytes / len(big) {
			rand.Read(big)
			if err := os.WriteFile(filepath.Join(src, "big", fmt.Sprintf("%s-%d.bin", tag, i)), big, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	addData("idle")
	_, idle := backup()

	// Load: clients loop until the backup ends.
	addData("load")
	rels := make([]string, 0, len(files))
	for r := range files {
		rels = append(rels, r)
	}
	slices.Sort(rels)
	base := "http://" + p.addr
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 2 * time.Minute}
	var mu sync.Mutex
	lat := map[string][]time.Duration{}
	var errs []string
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(c), 9))
			for i := 0; ctx.Err() == nil || i < 3; i++ {
				rel := rels[rng.IntN(len(rels))]
				var kind, url, method string
				switch i % 3 {
				case 0:
					kind, method, url = "propfind", "PROPFIND", base+"/dav/h1/latest/files/"+filepath.Dir(rel)+"/"
				case 1:
					kind, method, url = "dav_get", "GET", base+"/dav/h1/latest/files/"+rel
				case 2:
					kind, method, url = "http_get", "GET", base+"/api/v1/snapshots/"+snap+"/file/"+rel
				}
				req, _ := http.NewRequest(method, url, nil)
				if method == "PROPFIND" {
					req.Header.Set("Depth", "1")
					req.SetBasicAuth("viewer", tok.Token)
				} else if kind == "dav_get" {
					req.SetBasicAuth("viewer", tok.Token)
				} else {
					req.Header.Set("Authorization", "Bearer "+tok.Token)
				}
				t0 := time.Now()
				resp, err := hc.Do(req)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				d := time.Since(t0)
				bad := ""
				switch {
				case err != nil:
					bad = err.Error()
				case method == "PROPFIND" && (resp.StatusCode != 207 || !strings.Contains(string(body), "f0")):
					bad = fmt.Sprintf("%d", resp.StatusCode)
				case method == "GET" && (resp.StatusCode != 200 || string(body) != string(files[rel])):
					bad = fmt.Sprintf("%d, %d bytes, want %d", resp.StatusCode, len(body), len(files[rel]))
				}
				mu.Lock()
				lat[kind] = append(lat[kind], d)
				if bad != "" {
					errs = append(errs, fmt.Sprintf("%s %s: %s", method, url, bad))
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // clients running before the backup starts
	_, loaded := backup()
	stop()
	wg.Wait()

	res := loadResult{When: time.Now().UTC(), Clients: clients, Requests: map[string]int{}, Errors: len(errs),
		LatencyMS: map[string]latency{}, BackupBytes: newBytes,
		BackupIdleSeconds: idle.Seconds(), BackupLoadSeconds: loaded.Seconds(),
		Note: "cairn serve on the test machine (shared 2 cores); WebDAV with a token as Basic password, HTTP downloads with a bearer token; backups of 48 MiB of new random data over the local method"}
	for k, v := range lat {
		res.Requests[k] = len(v)
		res.LatencyMS[k] = percentiles(v)
	}
	res.ThroughputIdleMBps = float64(newBytes) / (1 << 20) / idle.Seconds()
	res.ThroughputLoadMBps = float64(newBytes) / (1 << 20) / loaded.Seconds()
	res.ThroughputLossPct = 100 * (1 - res.ThroughputLoadMBps/res.ThroughputIdleMBps)
	out, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("load result:\n%s", out)
	if len(errs) > 0 {
		t.Fatalf("%d of %d requests failed under load, e.g.:\n%s", len(errs), len(lat["propfind"])+len(lat["dav_get"])+len(lat["http_get"]),
			strings.Join(errs[:min(len(errs), 10)], "\n"))
	}
	for _, k := range []string{"propfind", "dav_get", "http_get"} {
		if res.Requests[k] < clients {
			t.Errorf("only %d %s requests", res.Requests[k], k)
		}
	}
	if dst := os.Getenv("CAIRN_LOAD_OUT"); dst != "" || tortureTime(t) > 0 {
		if dst == "" {
			dst = "../../bench/load.json"
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
