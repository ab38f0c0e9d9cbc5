package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"

	"github.com/cairn-backup/cairn/appliance"
	"github.com/cairn-backup/cairn/pool"
	"github.com/cairn-backup/cairn/pullers/archive"
)

func init() {
	register(&command{name: "import", short: "import a tar/tar.gz/tar.zst/tar.xz or zip archive as a snapshot", run: runImport})
}

const importUsage = "usage: cairn import --host H [--source S] [--max-ratio R] [--json] ARCHIVE|-\n" +
	"       (with --pool P straight into a pool; else through the appliance: --data, --server, --token)\n\n" +
	"Makes a snapshot of the archive's contents. Hostile archives (.., absolute paths, links out\n" +
	"of the tree, zip bombs beyond R unpacked bytes per archive byte, default 200) are refused.\n\n"

func runImport(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "backuppc" {
		return runImportBackupPC(ctx, args[1:]) // cmd_import_backuppc.go
	}
	direct := poolGiven(args)
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	var pf *poolFlags
	var conn apConn
	if direct {
		pf = addPoolFlags(fs)
	} else {
		conn.register(fs)
	}
	host := fs.String("host", "", "host the snapshot is filed under (required; through the appliance it must exist)")
	source := fs.String("source", "import", "source name of the snapshot")
	ratio := fs.Float64("max-ratio", 0, "zip-bomb cap: unpacked bytes per archive byte (default 200)")
	asJSON := &conn.json // the appliance flags include --json
	if direct {
		fs.BoolVar(asJSON, "json", false, "print JSON")
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), importUsage)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *host == "" {
		fs.Usage()
		return errUsage
	}
	if !pool.ValidName(*host) || !pool.ValidName(*source) {
		return fmt.Errorf("host %q and source %q must be non-empty names without '/'", *host, *source)
	}
	if *ratio != 0 && *ratio < 1 {
		return fmt.Errorf("--max-ratio %g: want a number ≥ 1", *ratio)
	}
	var in io.Reader = os.Stdin
	if pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return fmt.Errorf("archive %s: %w", pos[0], err)
		}
		defer f.Close()
		in = f
	}
	if direct {
		p, err := pf.open(ctx)
		if err != nil {
			return err
		}
		m, st, err := appliance.ImportArchive(ctx, p, *host, *source, in, archive.Options{MaxRatio: *ratio})
		if err != nil {
			return fmt.Errorf("import %s: %w", pos[0], err)
		}
		if *asJSON {
			return apPrintJSON(map[string]any{"snapshot": m, "format": st.Format, "archive_bytes": st.ArchiveBytes})
		}
		fmt.Println(m.ID)
		fmt.Fprintf(os.Stderr, "imported %s (%s): %d files, %d directories, %d bytes\n", pos[0], st.Format, st.Files, st.Dirs, st.Bytes)
		return nil
	}
	c, err := conn.client()
	if err != nil {
		return err
	}
	q := url.Values{"source": {*source}}
	if *ratio != 0 {
		q.Set("max_ratio", strconv.FormatFloat(*ratio, 'g', -1, 64))
	}
	path := "/api/v1/hosts/" + apEsc(*host) + "/import?" + q.Encode()
	var out appliance.ImportBody
	if err := c.send(ctx, "POST", path, "application/octet-stream", in, &out); err != nil {
		return err
	}
	if *asJSON {
		return apPrintJSON(out)
	}
	fmt.Println(out.Snapshot.ID)
	fmt.Fprintf(os.Stderr, "imported %s (%s): %d files, %d bytes\n", pos[0], out.Format, out.Snapshot.Files, out.Snapshot.Bytes)
	return nil
}
