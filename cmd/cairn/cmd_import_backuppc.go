package main

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cairn-backup/cairn/appliance"
)

const importBackupPCUsage = "usage: cairn import backuppc [--dry-run] [--json] CONFDIR\n" +
	"       (through the appliance: --data, --server, --token; admin)\n\n" +
	"Reads BackupPC 4's config directory (hosts, config.pl, pc/HOST.pl or HOST.pl; e.g.\n" +
	"/etc/backuppc) and creates the equivalent hosts, sources, schedules and retention.\n" +
	"Perl is parsed, never run. Every setting that is not mapped is listed.\n\n"

// runImportBackupPC is `cairn import backuppc` (dispatched by runImport).
func runImportBackupPC(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("import backuppc", flag.ContinueOnError)
	var conn apConn
	conn.register(fs)
	dry := fs.Bool("dry-run", false, "only show what would be created")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), importBackupPCUsage)
		fs.PrintDefaults()
	}
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	body, err := tarBackupPCConf(pos[0])
	if err != nil {
		return err
	}
	c, err := conn.client()
	if err != nil {
		return err
	}
	path := "/api/v1/import/backuppc"
	if *dry {
		path += "?dry_run=true"
	}
	var out appliance.BackupPCImport
	if err := c.send(ctx, "POST", path, "application/x-tar", bytes.NewReader(body), &out); err != nil {
		return err
	}
	if conn.json {
		return apPrintJSON(out)
	}
	printBackupPCImport(os.Stdout, &out)
	return nil
}

// tarBackupPCConf packs the files the import reads from dir.
func tarBackupPCConf(dir string) ([]byte, error) {
	if _, err := os.Stat(filepath.Join(dir, "hosts")); err != nil {
		return nil, fmt.Errorf("BackupPC config directory %s: %w (want its hosts file)", dir, err)
	}
	var names []string
	for _, pat := range []string{"hosts", "config.pl", "*.pl", "pc/*.pl"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		names = append(names, m...)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	for _, full := range names {
		rel, err := filepath.Rel(dir, full)
		if err != nil || seen[rel] {
			continue
		}
		seen[rel] = true
		st, err := os.Stat(full)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(full)
		if err != nil {
			return nil, fmt.Errorf("BackupPC config %s: %w", full, err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func printBackupPCImport(w io.Writer, r *appliance.BackupPCImport) {
	if r.DryRun {
		fmt.Fprintln(w, "dry run: nothing was created")
	}
	for _, h := range r.Hosts {
		fmt.Fprintf(w, "host %s: %s\n", h.Name, h.Status)
		if h.Address != "" {
			fmt.Fprintf(w, "  address %s\n", h.Address)
		}
		if !h.Enabled {
			fmt.Fprintln(w, "  disabled")
		}
		for _, s := range h.Sources {
			fmt.Fprintf(w, "  source %s: %s %s", s.Name, s.Method, s.Path)
			keys := make([]string, 0, len(s.Options))
			for k := range s.Options {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, " %s=%s", k, s.Options[k])
			}
			if len(s.SecretKeys) > 0 {
				fmt.Fprintf(w, " credentials=%s", strings.Join(s.SecretKeys, ","))
			}
			if len(s.Excludes) > 0 {
				fmt.Fprintf(w, " excludes=%s", strings.Join(s.Excludes, ","))
			}
			fmt.Fprintln(w)
		}
		for _, s := range h.Schedules {
			fmt.Fprintf(w, "  schedule %q", s.Cron)
			if len(s.Blackout) > 0 {
				fmt.Fprintf(w, " blackout %s", strings.Join(s.Blackout, "; "))
			}
			fmt.Fprintln(w)
		}
		rt := h.Retention
		fmt.Fprintf(w, "  retention last=%d hourly=%d daily=%d weekly=%d monthly=%d yearly=%d\n", rt.Last, rt.Hourly, rt.Daily, rt.Weekly, rt.Monthly, rt.Yearly)
	}
	section := func(title string, notes []appliance.BackupPCNote) {
		if len(notes) == 0 {
			return
		}
		fmt.Fprintf(w, "%s (%d):\n", title, len(notes))
		for _, n := range notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	section("approximations", r.Approximations)
	section("NOT MAPPED", r.Unmapped)
	if len(r.ParseErrors) > 0 {
		fmt.Fprintf(w, "NOT PARSED (never evaluated) (%d):\n", len(r.ParseErrors))
		for _, e := range r.ParseErrors {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}
