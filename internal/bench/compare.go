package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// figures flattens a record into named medians ("scenario / tool / wall s"),
// the form two runs are compared in.
func figures(r *record) map[string]float64 {
	out := map[string]float64{}
	metrics := []struct {
		name string
		f    func(sample) float64
	}{{"wall s", fWall}, {"CPU s", fCPU}, {"peak RSS MiB", fRSS}, {"stored MiB", fStored},
		{"received MiB", func(s sample) float64 { return float64(s.Received) / (1 << 20) }}}
	for _, res := range r.Results {
		for _, m := range metrics {
			if st, ok := field(res, m.f); ok && ((m.name != "stored MiB" && m.name != "received MiB") || st.med > 0) {
				out[res.Scenario+" / "+res.Tool+" / "+m.name] = st.med
			}
		}
	}
	for _, f := range r.Flat {
		if f.Err == "" {
			k := fmt.Sprintf("flat %d files / %s / ", f.Files, f.Tool)
			out[k+"wall s"] = f.Wall.Seconds()
			out[k+"peak RSS MiB"] = float64(f.MaxRSS) / (1 << 20)
		}
	}
	for _, d := range r.Dumps {
		if d.Bytes > 0 {
			out["dump dedup / "+d.DB+" / "+d.Change+" / new %"] = 100 * float64(d.BytesNew) / float64(d.Bytes)
		}
	}
	if l := r.Load; l != nil {
		for k, lt := range l.LatencyMS {
			out["load / "+k+" / p99 ms"] = lt.P99
		}
		out["load / backup throughput loss %"] = l.ThroughputLossPct
	}
	return out
}

func loadRecord(path string) (*record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: not a bench results file: %w", path, err)
	}
	return &r, nil
}

// compareResults prints, for every figure in either file, the old and new
// value and the change.
func compareResults(w io.Writer, oldPath, newPath string) error {
	if oldPath == "" || newPath == "" {
		return fmt.Errorf("bench-compare: need both files (make bench-compare OLD=a.json NEW=b.json)")
	}
	oldR, err := loadRecord(oldPath)
	if err != nil {
		return err
	}
	newR, err := loadRecord(newPath)
	if err != nil {
		return err
	}
	of, nf := figures(oldR), figures(newR)
	keys := make([]string, 0, len(of)+len(nf))
	for k := range of {
		keys = append(keys, k)
	}
	for k := range nf {
		if _, ok := of[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	fmt.Fprintf(w, "old: %s (%s, cairn %s)\nnew: %s (%s, cairn %s)\n\n", oldPath, oldR.Start.UTC().Format("2006-01-02 15:04"), oldR.Versions["cairn"],
		newPath, newR.Start.UTC().Format("2006-01-02 15:04"), newR.Versions["cairn"])
	if oldR.Quick != newR.Quick || oldR.Corpus.Key() != newR.Corpus.Key() {
		fmt.Fprintf(w, "WARNING: the runs used different corpora (%s vs %s): the changes below compare different work.\n\n", oldR.Corpus.Key(), newR.Corpus.Key())
	}
	width := 0
	for _, k := range keys {
		width = max(width, len([]rune(k)))
	}
	fmt.Fprintf(w, "%-*s %12s %12s %9s\n", width, "figure (median)", "old", "new", "change")
	for _, k := range keys {
		o, ok1 := of[k]
		n, ok2 := nf[k]
		pad := strings.Repeat(" ", width-len([]rune(k)))
		switch {
		case !ok1:
			fmt.Fprintf(w, "%s%s %12s %12.2f %9s\n", k, pad, "–", n, "new")
		case !ok2:
			fmt.Fprintf(w, "%s%s %12.2f %12s %9s\n", k, pad, o, "–", "gone")
		case o == 0:
			fmt.Fprintf(w, "%s%s %12.2f %12.2f %9s\n", k, pad, o, n, "")
		default:
			fmt.Fprintf(w, "%s%s %12.2f %12.2f %+8.1f%%\n", k, pad, o, n, 100*(n/o-1))
		}
	}
	return nil
}
