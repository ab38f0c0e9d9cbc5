package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"sort"

	"github.com/cairn-backup/cairn/appliance"
)

// toHostFlags are restore's flags for writing back to the host.
type toHostFlags struct {
	toHost  bool
	inPlace bool
	hostDir string
}

func (t *toHostFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&t.toHost, "to-host", false, "write back to the source's host over its method (sftp, smb, ftp), into a new cairn-restore-<time> directory there")
	fs.BoolVar(&t.inPlace, "in-place", false, "with --to-host: overwrite the source path on the host (admins only)")
	fs.StringVar(&t.hostDir, "host-dir", "", "with --to-host: the new directory on the host to restore into")
}

// apRestoreToHost is `cairn restore HOST/SNAP[/path] --to-host`.
func apRestoreToHost(ctx context.Context, c *apConn, t *toHostFlags, spec string) error {
	ri, err := apRestoreInput(spec)
	if err != nil {
		return err
	}
	in := appliance.RestoreToHostInput{Host: ri.Host, Snapshot: ri.Snapshot, Source: ri.Source, Path: ri.Path,
		ToHost: true, InPlace: t.inPlace, Dest: t.hostDir}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var job appliance.JobBody
	if err := cl.do(ctx, "POST", "/api/v1/restores", in, &job); err != nil {
		return err
	}
	final, err := apWaitJob(ctx, cl, job.ID, "restore")
	if err != nil {
		return err
	}
	if c.json {
		if err := apPrintJSON(final); err != nil {
			return err
		}
	}
	var p struct {
		Result struct {
			Dest string `json:"dest"`
		} `json:"result"`
	}
	json.Unmarshal(final.Progress, &p)
	if err := apJobResult(final); err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintf(os.Stderr, "restored %s to %s on host %s\n", spec, p.Result.Dest, ri.Host)
	}
	return nil
}

// hostTest is `cairn host test NAME [--source S]`: the connection test
// of each source, with the server's identity.
func hostTest(ctx context.Context, args []string) error {
	var c apConn
	var source string
	fs := apFlagSet("host test", "host test NAME [--source NAME] [--accept-new-key] [--json]")
	c.register(fs)
	fs.StringVar(&source, "source", "", "test only this source")
	var accept bool
	fs.BoolVar(&accept, "accept-new-key", false, "admins: ignore the pinned host key or certificate and pin the one seen now (after a deliberate server change)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("host test: want exactly one host NAME")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	p := "/api/v1/hosts/" + apEsc(pos[0]) + "/test"
	q := url.Values{}
	if source != "" {
		q.Set("source", source)
	}
	if accept {
		q.Set("accept", "true")
	}
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out []appliance.SourceTestBody
	if err := cl.do(ctx, "POST", p, nil, &out); err != nil {
		return err
	}
	if c.json {
		if err := apPrintJSON(out); err != nil {
			return err
		}
	}
	failed := 0
	for _, r := range out {
		if !r.OK && r.Supported {
			failed++
		}
		if c.json {
			continue
		}
		state := "ok"
		switch {
		case !r.Supported:
			state = "not tested: " + r.Error
		case !r.OK:
			state = "FAILED: " + r.Error
		}
		fmt.Printf("source %s (%s): %s\n", r.Source, r.Method, state)
		keys := make([]string, 0, len(r.Identity))
		for k := range r.Identity {
			if k != "host_key" { // the fingerprint says the same, shorter
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Printf("  %-22s %s\n", k+":", r.Identity[k])
		}
		if r.Pinned != "" {
			fmt.Printf("  %-22s %s\n", "pinned:", r.Pinned)
		} else if r.Supported {
			fmt.Printf("  %-22s %s\n", "pinned:", "(none yet: the first backup pins what it sees)")
		}
	}
	if failed > 0 {
		return fmt.Errorf("host test %s: %d of %d sources failed", pos[0], failed, len(out))
	}
	if len(out) == 0 {
		return fmt.Errorf("host test %s: no sources", pos[0])
	}
	return nil
}
