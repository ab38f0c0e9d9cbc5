package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/internal/bench/corpus"
)

func sec(wall, cpu float64, rss int64) sample {
	return sample{Wall: time.Duration(wall * float64(time.Second)), CPU: time.Duration(cpu * float64(time.Second)), MaxRSS: rss << 20}
}

func peerRecord() record {
	return record{
		Runs: 1, Quick: true, Tools: []string{"cairn"}, Corpus: corpus.Quick(1), Shared: true, Load0: "9.1", Load1: "8.2",
		Versions: map[string]string{"cairn": "cairn test"},
		Pairs: []pairSpec{
			{Scenario: "sftp first", Peer: "sftp -r", Issue: "#5", Target: 1.25},
			{Scenario: "sftp nochange", PeerScenario: "rsync ssh nochange", Peer: "rsync -a (ssh)", Issue: "#5", Target: 1.5},
			{Scenario: "fuse ls -R warm", Peer: "restic mount", Issue: "#8", Target: 0.5},
			{Scenario: "smb first", Peer: "smbclient mget", Issue: "#5", Target: 1.25},
		},
		Results: []*result{
			{Scenario: scFirst, Tool: "cairn", Samples: []sample{sec(2, 3, 90)}},
			{Scenario: "sftp first", Tool: "cairn", Samples: []sample{sec(10, 8, 120), sec(12, 8, 121), sec(11, 8, 119)}},
			{Scenario: "sftp first", Tool: "sftp -r", Samples: []sample{sec(4, 2, 16)}},
			{Scenario: "sftp nochange", Tool: "cairn", Samples: []sample{sec(0.3, 0.1, 20)}},
			{Scenario: "rsync ssh nochange", Tool: "rsync -a (ssh)", Samples: []sample{sec(0.5, 0.1, 8)}},
			{Scenario: "fuse ls -R warm", Tool: "cairn", Samples: []sample{{Wall: 20 * time.Millisecond, ServerCPU: 10 * time.Millisecond, ServerRSS: 64 << 20}}},
			{Scenario: "fuse ls -R warm", Tool: "restic mount", Samples: []sample{{Wall: 70 * time.Millisecond, ServerRSS: 80 << 20}}},
			{Scenario: "smb first", Tool: "cairn", Errs: []string{"pull failed: connection refused"}},
			{Scenario: "scale local first 50000", Tool: "cairn", Samples: []sample{sec(10, 5, 40)}},
			{Scenario: "scale local nochange 50000", Tool: "cairn", Samples: []sample{sec(1, 1, 40)}},
			{Scenario: "scale local first 1000000", Tool: "cairn", Samples: []sample{sec(200, 100, 60)}},
			{Scenario: "scale local nochange 1000000", Tool: "cairn", Samples: []sample{sec(25, 20, 70)}},
			{Scenario: "scale fuse ls -R 1000000", Tool: "cairn", Samples: []sample{sec(30, 3, 2)}},
		},
		Dumps:      []dumpResult{{DB: "PostgreSQL", Change: "scattered", Bytes: 100 << 20, BytesNew: 25 << 20}},
		ScaleSizes: []int{50_000, 1_000_000},
	}
}

func TestReportPeers(t *testing.T) {
	b := &bench{rec: peerRecord()}
	out := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := b.writeReport(out); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	md := string(data)
	for _, want := range []string{
		"**This run shared the machine**",
		"| sftp first | #5 | sftp -r | 11.00 (10.00–12.00) | 4.00 (4.00–4.00) | 2.75× | ≤ 1.25× | ❌ not met | 8.00 | 120 | 16 | CPU and overlap: 8.0 CPU-s fits 2 cores in 5.00 s only fully parallel",
		"(storing the same corpus from a local directory took 3.0 CPU-s)",
		"| sftp nochange | #5 | rsync -a (ssh) (rsync ssh nochange) | 0.30",
		"| 0.60× | ≤ 1.5× | ✅ met |",
		"| fuse ls -R warm | #8 | restic mount | 0.02 (0.02–0.02) | 0.07 (0.07–0.07) | 0.29× | ≤ 0.5× | ✅ met | 0.01 | 64 | 80 |",
		"| smb first | #5 | smbclient mget | | | n/a | ≤ 1.25× | ❌ failed: pull failed: connection refused",
		"**2 of 4 peer targets met**",
		"| PostgreSQL | scattered | 100.0 | 25.00 | 25.0% | ❌ not met |",
		"| no-change time grows at most linearly (local): ≤ 20× | 25.0× | ❌ not met |",
		"| peak RSS < 512 MiB at 1000000 files (local first) | 60 MiB | ✅ met |",
		"`ls -R` through the FUSE mount (`fusefs`) of the 1000000-file snapshot: **30.00 s**",
		"## Profile and fix (issue 14)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(md)
	}
}

func TestCompareResults(t *testing.T) {
	dir := t.TempDir()
	oldR := peerRecord()
	newR := peerRecord()
	newR.Results[1] = &result{Scenario: "sftp first", Tool: "cairn", Samples: []sample{sec(5.5, 4, 60)}}
	newR.Results = append(newR.Results, &result{Scenario: "ftp first", Tool: "cairn", Samples: []sample{sec(3, 1, 30)}})
	write := func(name string, r record) string {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var out bytes.Buffer
	if err := compareResults(&out, write("old.json", oldR), write("new.json", newR)); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"sftp first / cairn / wall s", "11.00", "5.50", "-50.0%",
		"sftp first / cairn / peak RSS MiB", "60.00",
		"ftp first / cairn / wall s", "new",
		"dump dedup / PostgreSQL / scattered / new %",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("compare output lacks %q:\n%s", want, got)
		}
	}
	if err := compareResults(&out, filepath.Join(dir, "old.json"), ""); err == nil || !strings.Contains(err.Error(), "OLD=") {
		t.Errorf("missing NEW: err %v, want a usage hint", err)
	}
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte("not json"), 0o644)
	if err := compareResults(&out, filepath.Join(dir, "bad.json"), filepath.Join(dir, "old.json")); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("bad file: err %v, want it named", err)
	}
}
