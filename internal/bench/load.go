package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"
)

// loadFigures are the figures of issue 15's load test (internal/torture
// TestLoad: 50 WebDAV and HTTP clients browsing and downloading while a
// backup runs), read from the file it writes (bench/load.json, -load).
// The JSON names are that file's; they are kept in results.json too, so
// -render and -merge keep them.
type loadFigures struct {
	When               time.Time              `json:"when"`
	Clients            int                    `json:"clients"`
	Requests           map[string]int         `json:"requests"`
	Errors             int                    `json:"errors"`
	LatencyMS          map[string]loadLatency `json:"latency_ms"`
	BackupBytes        int64                  `json:"backup_bytes"`
	BackupIdleSeconds  float64                `json:"backup_idle_seconds"`
	BackupLoadSeconds  float64                `json:"backup_load_seconds"`
	ThroughputIdleMBps float64                `json:"throughput_idle_mb_s"`
	ThroughputLoadMBps float64                `json:"throughput_load_mb_s"`
	ThroughputLossPct  float64                `json:"throughput_loss_pct"`
	Note               string                 `json:"note"`
	// File is where the figures were read from (set by the bench).
	File string `json:"file,omitempty"`
}

type loadLatency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// readLoad reads the load test's figures from file. A missing file is
// (nil, nil): the load test has not been run on this machine.
func readLoad(file string) (*loadFigures, error) {
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load test figures: %w", err)
	}
	var l loadFigures
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("load test figures %s: %w", file, err)
	}
	if l.Clients == 0 || len(l.LatencyMS) == 0 {
		return nil, fmt.Errorf("load test figures %s: no clients or latencies in it", file)
	}
	l.File = file
	return &l, nil
}

// loadKinds are the request kinds of the load test, in report order.
var loadKinds = []struct{ key, what string }{
	{"propfind", "WebDAV PROPFIND (Depth 1)"},
	{"dav_get", "WebDAV GET"},
	{"http_get", "HTTP download (API, bearer token)"},
}

// writeLoad is the section of issue 15's load test.
func (b *bench) writeLoad(p func(string, ...any)) {
	l := b.rec.Load
	if l == nil {
		return
	}
	p("## Load: %d WebDAV and HTTP clients during a backup (issue 15)\n\n", l.Clients)
	p("Measured by `internal/torture` `TestLoad` (`make torture`; it writes `%s`), not by this bench run: it ran %s UTC. %d clients browse (PROPFIND) and download (WebDAV GET, HTTP download) from an older snapshot of a running `cairn serve` while a backup of %s of new data runs; the same backup is timed alone first. %s.\n\n",
		l.File, l.When.UTC().Format("2006-01-02 15:04"), l.Clients, mib(l.BackupBytes), l.Note)
	p("| Request | Requests | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n")
	keys := []string{}
	for _, k := range loadKinds {
		keys = append(keys, k.key)
		if lt, ok := l.LatencyMS[k.key]; ok {
			p("| %s | %d | %.1f | %.1f | %.1f |\n", k.what, l.Requests[k.key], lt.P50, lt.P99, lt.Max)
		}
	}
	var other []string
	for k := range l.LatencyMS {
		if !slices.Contains(keys, k) {
			other = append(other, k)
		}
	}
	slices.Sort(other)
	for _, k := range other {
		lt := l.LatencyMS[k]
		p("| %s | %d | %.1f | %.1f | %.1f |\n", k, l.Requests[k], lt.P50, lt.P99, lt.Max)
	}
	p("\n- Errors: **%d** (target: zero): %s.\n", l.Errors, strings.TrimSpace(verdict(l.Errors == 0)))
	p("- Backup throughput: %.1f MiB/s alone (%.2f s), %.1f MiB/s under the load (%.2f s): **%.0f%% lower** under load. No target was set. The clients (in the test process), `cairn serve` and the backup share the machine's cores, so part of the loss is CPU the clients themselves take.\n\n",
		l.ThroughputIdleMBps, l.BackupIdleSeconds, l.ThroughputLoadMBps, l.BackupLoadSeconds, l.ThroughputLossPct)
}
