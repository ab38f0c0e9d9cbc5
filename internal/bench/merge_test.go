package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMergePeers(t *testing.T) {
	base := record{
		Pairs: []pairSpec{
			{Scenario: "postgres dump", Peer: "pg_dump > /dev/null", Issue: "#7"},
			{Scenario: "fuse ls -R cold", Peer: "restic mount", Issue: "#8"},
			{Scenario: "fuse tar whole tree", Peer: "restic mount", Issue: "#8"},
			{Scenario: "webdav walk + GET all", Peer: "x/net/webdav", Issue: "#8"},
		},
		Results: []*result{
			{Scenario: "first", Tool: "cairn", Samples: []sample{{Wall: time.Second}}},
			{Scenario: "fuse ls -R cold", Tool: "cairn", Samples: []sample{{Wall: 5 * time.Second}}},
		},
		Dumps:  []dumpResult{{DB: "PostgreSQL", Change: "scattered", Bytes: 100, BytesNew: 50}},
		Verify: map[string][]string{"webdav": {"old webdav"}, "cairn": {"restore ok"}},
	}
	other := record{
		Start:    time.Date(2026, 12, 5, 12, 30, 0, 0, time.UTC),
		Versions: map[string]string{"cairn": "abc"},
		Load0:    "1.0", Load1: "2.0",
		Pairs: []pairSpec{
			{Scenario: "mariadb dump", Peer: "mariadb-dump > /dev/null", Issue: "#7"},
			{Scenario: "fuse ls -R cold", Peer: "restic mount", Issue: "#8", Target: 0.5},
			{Scenario: "fuse ls -R cold", Peer: "borg mount", Issue: "#8"},
			{Scenario: "fuse random reads 40 MiB file", Peer: "restic mount", Issue: "#8"},
		},
		Results: []*result{
			{Scenario: "fuse ls -R cold", Tool: "cairn", Samples: []sample{{Wall: 2 * time.Second}}},
			{Scenario: "mariadb dump", Tool: "cairn", Samples: []sample{{Wall: 3 * time.Second}}},
		},
		Dumps: []dumpResult{
			{DB: "PostgreSQL", Change: "scattered", Bytes: 100, BytesNew: 40},
			{DB: "MariaDB", Change: "scattered", Bytes: 200, BytesNew: 20},
		},
		Verify:  map[string][]string{"fuse": {"random reads ok"}},
		Skipped: []string{"x: y"},
	}
	if err := base.mergePeers(other); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range base.Pairs {
		got = append(got, p.Scenario+"/"+p.Peer)
	}
	want := []string{
		"postgres dump/pg_dump > /dev/null", "mariadb dump/mariadb-dump > /dev/null",
		"fuse ls -R cold/restic mount", "fuse ls -R cold/borg mount", "fuse tar whole tree/restic mount",
		"fuse random reads 40 MiB file/restic mount", "webdav walk + GET all/x/net/webdav",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("pairs:\n got %q\nwant %q", got, want)
	}
	if base.Pairs[2].Target != 0.5 {
		t.Errorf("the re-measured pair was not replaced: %+v", base.Pairs[2])
	}
	if len(base.Results) != 3 || base.Results[0].Samples[0].Wall != time.Second ||
		base.Results[1].Samples[0].Wall != 2*time.Second || base.Results[2].Scenario != "mariadb dump" {
		t.Errorf("results: %+v %+v %+v", base.Results[0], base.Results[1], base.Results[len(base.Results)-1])
	}
	if len(base.Dumps) != 2 || base.Dumps[0].BytesNew != 40 || base.Dumps[1].DB != "MariaDB" {
		t.Errorf("dumps: %+v", base.Dumps)
	}
	if base.Verify["webdav"][0] != "old webdav" || base.Verify["fuse"][0] != "random reads ok" || base.Verify["cairn"][0] != "restore ok" {
		t.Errorf("verify: %v", base.Verify)
	}
	if len(base.MergedFrom) != 1 || !strings.Contains(base.MergedFrom[0], "2026-12-05 12:30 UTC (cairn `abc`, load average 1.0 at its start and 2.0") ||
		!strings.HasSuffix(base.MergedFrom[0], ": fuse ls -R cold, mariadb dump") {
		t.Errorf("merged from: %q", base.MergedFrom)
	}
	if err := base.mergePeers(record{}); err == nil {
		t.Error("merging a record without peer figures: no error")
	}
}

// TestReportFasterPeer: with restic mount and borg mount on the same
// scenario, only the row of the faster one carries the target.
func TestReportFasterPeer(t *testing.T) {
	rec := peerRecord()
	rec.Pairs = append(rec.Pairs, pairSpec{Scenario: "fuse ls -R warm", Peer: "borg mount", Issue: "#8", Target: 0.5})
	rec.Results = append(rec.Results, &result{Scenario: "fuse ls -R warm", Tool: "borg mount", Samples: []sample{{Wall: 50 * time.Millisecond}}})
	b := &bench{rec: rec}
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
		"| fuse ls -R warm | #8 | restic mount | 0.02 (0.02–0.02) | 0.07 (0.07–0.07) | 0.29× | – (borg mount was faster) | – |",
		"| fuse ls -R warm | #8 | borg mount | 0.02 (0.02–0.02) | 0.05 (0.05–0.05) | 0.40× | ≤ 0.5× | ✅ met |",
		"the target is against the faster of them",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Count(md, "- *fuse ls -R warm*:") > 1 {
		t.Error("the scenario's explanation is repeated per peer")
	}
}
