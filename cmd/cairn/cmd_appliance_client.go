package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cairn-backup/cairn/appliance"
)

// The appliance verbs (host, backup, job, user, token, catalog, and
// restore/pool without --pool) are clients of a running `cairn serve`:
// over the unix socket in the data dir by default, or --server URL with
// --token T (env CAIRN_SERVER, CAIRN_TOKEN).

// The direct verbs restore and pool hand over to the appliance when no
// --pool is given.
func init() {
	applianceRestore = apRestore
	appliancePool = apPool
}

// apConn holds the connection flags every appliance verb takes.
type apConn struct {
	data   string
	server string
	token  string
	json   bool
}

func (c *apConn) register(fs *flag.FlagSet) {
	fs.StringVar(&c.data, "data", apDataDirDefault(), "data directory of the local appliance (its unix socket); env CAIRN_DATA")
	fs.StringVar(&c.server, "server", os.Getenv("CAIRN_SERVER"), "URL of a remote appliance (with --token); env CAIRN_SERVER")
	fs.StringVar(&c.token, "token", os.Getenv("CAIRN_TOKEN"), "API token; env CAIRN_TOKEN")
	fs.BoolVar(&c.json, "json", false, "print JSON for scripts")
}

// apClient talks to the appliance API.
type apClient struct {
	base  string
	hc    *http.Client
	token string
	where string // for messages
}

func (c *apConn) client() (*apClient, error) {
	if c.server != "" {
		u, err := url.Parse(c.server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("--server %q: want http(s)://host[:port]", c.server)
		}
		return &apClient{base: strings.TrimRight(c.server, "/"), hc: &http.Client{}, token: c.token, where: c.server}, nil
	}
	sock := filepath.Join(c.data, appliance.SocketName)
	if _, err := os.Stat(sock); err != nil {
		return nil, fmt.Errorf("no appliance running in %s (no socket %s): start `cairn serve --data %s`, or give --server and --token", c.data, sock, c.data)
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	return &apClient{base: "http://cairn", hc: &http.Client{Transport: tr}, token: c.token, where: sock}, nil
}

// apError is an error answer of the API.
type apError struct {
	status int
	msg    string
}

func (e *apError) Error() string { return e.msg }

// do sends a request with an optional JSON body and decodes a JSON answer
// into out (when not nil).
func (c *apClient) do(ctx context.Context, method, path string, in, out any) error {
	if in == nil {
		return c.send(ctx, method, path, "", nil, out)
	}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.send(ctx, method, path, "application/json", bytes.NewReader(b), out)
}

// send sends body (nil for none) as contentType and decodes a JSON answer
// into out (when not nil); an error answer becomes an *apError.
func (c *apClient) send(ctx context.Context, method, path, contentType string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("appliance at %s: %w", c.where, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("appliance at %s: %w", c.where, err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &apError{resp.StatusCode, e.Error}
		}
		return &apError{resp.StatusCode, fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: bad answer: %w", method, path, err)
		}
	}
	return nil
}

// apParse parses flags that may come before, between or after positional
// arguments (`cairn host add web1 --method local`).
func apParse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// apFlagSet makes a flag set with a usage line.
func apFlagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: cairn %s\n\nflags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// apSub dispatches a verb's subcommands.
func apSub(ctx context.Context, verb string, args []string, subs map[string]func(context.Context, []string) error, order []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(os.Stderr, "usage: cairn %s %s ...\n", verb, strings.Join(order, "|"))
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	f, ok := subs[args[0]]
	if !ok {
		return fmt.Errorf("unknown subcommand %q (want %s)", args[0], strings.Join(order, ", "))
	}
	return f(ctx, args[1:])
}

// apPrintJSON prints v indented.
func apPrintJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// apTable prints rows under a header, aligned.
func apTable(header []string, rows [][]string) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// apMulti is a repeatable string flag.
type apMulti []string

func (m *apMulti) String() string     { return strings.Join(*m, ",") }
func (m *apMulti) Set(v string) error { *m = append(*m, v); return nil }

// apKV is a repeatable KEY=VALUE flag.
type apKV map[string]string

func (m apKV) String() string { return "" }
func (m apKV) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", v)
	}
	m[k] = val
	return nil
}

func apBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func apTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func apTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return apTime(*t)
}

func apEsc(s string) string { return url.PathEscape(s) }

// apRestore is `cairn restore HOST/SNAP[/path] --to DIR` against the
// appliance: SNAP is a snapshot ID (cairn backup ls) or "latest", which is
// followed by the source name: web1/latest/etc/nginx.
func apRestore(ctx context.Context, args []string) error {
	var c apConn
	var to string
	fs := apFlagSet("restore", "restore HOST/SNAPSHOT[/path] --to DIR | --to-host [--in-place] [--host-dir DIR]   (SNAPSHOT: an ID, or latest/SOURCE)")
	c.register(fs)
	fs.StringVar(&to, "to", "", "directory on the appliance to restore into (missing or empty)")
	var th toHostFlags
	th.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("restore: want exactly one HOST/SNAPSHOT[/path]")
	}
	if th.toHost {
		if to != "" {
			return fmt.Errorf("restore: give either --to DIR or --to-host")
		}
		return apRestoreToHost(ctx, &c, &th, pos[0])
	}
	if to == "" {
		return fmt.Errorf("restore: --to DIR is required")
	}
	in, err := apRestoreInput(pos[0])
	if err != nil {
		return err
	}
	if c.server == "" && !filepath.IsAbs(to) {
		// Over the local socket the appliance shares our filesystem.
		if to, err = filepath.Abs(to); err != nil {
			return err
		}
	}
	in.To = filepath.Clean(to)
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
	if err := apJobResult(final); err != nil {
		return err
	}
	if !c.json {
		fmt.Fprintf(os.Stderr, "restored %s to %s\n", pos[0], in.To)
	}
	return nil
}

// apRestoreInput parses HOST/SNAP[/path] and HOST/latest/SOURCE[/path].
func apRestoreInput(spec string) (*appliance.RestoreInput, error) {
	parts := strings.Split(strings.Trim(spec, "/"), "/")
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("restore %q: want HOST/SNAPSHOT[/path] (SNAPSHOT from cairn backup ls, or latest/SOURCE)", spec)
	}
	in := &appliance.RestoreInput{Host: parts[0], Snapshot: parts[1]}
	rest := parts[2:]
	if in.Snapshot == "latest" {
		if len(rest) == 0 {
			return nil, fmt.Errorf("restore %q: latest needs the source: HOST/latest/SOURCE[/path]", spec)
		}
		in.Source, rest = rest[0], rest[1:]
	}
	in.Path = strings.Join(rest, "/")
	return in, nil
}

// apPool is `cairn pool stats|check|gc` against the appliance.
func apPool(ctx context.Context, args []string) error {
	return apSub(ctx, "pool", args, map[string]func(context.Context, []string) error{
		"stats": apPoolStats, "check": apPoolCheck, "gc": apPoolGC,
	}, []string{"stats", "check", "gc"})
}

func apPoolStats(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("pool stats", "pool stats [--json]")
	c.register(fs)
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var b appliance.PoolBody
	if err := cl.do(ctx, "GET", "/api/v1/pool?fresh=1", nil, &b); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(b)
	}
	ratio := "-"
	if b.Bytes > 0 {
		ratio = fmt.Sprintf("%.2fx", float64(b.LogicalBytes)/float64(b.Bytes))
	}
	fmt.Printf("pool:      %s\nlocation:  %s\nencrypted: %v\ncreated:   %s\nsnapshots: %d\nobjects:   %d\nstored:    %s\nlogical:   %s (%s saved by dedup and compression)\n",
		b.ID, b.Location, b.Encrypted, apTime(b.Created), b.Snapshots, b.Objects, apBytes(b.Bytes), apBytes(b.LogicalBytes), ratio)
	if b.LastCheck != nil {
		fmt.Printf("checked:   %s: %s\n", apTime(*b.LastCheck), b.LastCheckMsg)
	}
	if im := b.Images; im != nil {
		fmt.Printf("images:    %s at %s (encrypted: %v): %d versions, %d blocks, %s stored\n", im.ID, im.Location, im.Encrypted, im.Versions, im.Objects, apBytes(im.Bytes))
	}
	return nil
}

func apPoolCheck(ctx context.Context, args []string) error {
	var c apConn
	var readData string
	fs := apFlagSet("pool check", "pool check [--read-data[=PCT]]")
	c.register(fs)
	fs.StringVar(&readData, "read-data", "", "also re-read and re-hash data: a percentage (e.g. 5) or 100 for all")
	// --read-data without a value means all of it.
	for i, a := range args {
		if a == "--read-data" || a == "-read-data" {
			args[i] = "--read-data=100"
		}
	}
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	in := appliance.CheckParams{}
	if readData != "" {
		var pct float64
		if _, err := fmt.Sscanf(strings.TrimSuffix(readData, "%"), "%g", &pct); err != nil || pct <= 0 || pct > 100 {
			return fmt.Errorf("--read-data %q: want a percentage in (0, 100]", readData)
		}
		in.ReadData, in.Percent = true, pct
	}
	return apPoolJob(ctx, &c, "/api/v1/pool/check", in, "pool check")
}

func apPoolGC(ctx context.Context, args []string) error {
	var c apConn
	var dry bool
	fs := apFlagSet("pool gc", "pool gc [--dry-run]")
	c.register(fs)
	fs.BoolVar(&dry, "dry-run", false, "only report what would be removed")
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	return apPoolJob(ctx, &c, "/api/v1/pool/gc", appliance.GCParams{DryRun: dry}, "pool gc")
}

func apPoolJob(ctx context.Context, c *apConn, path string, in any, verb string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	var job appliance.JobBody
	if err := cl.do(ctx, "POST", path, in, &job); err != nil {
		return err
	}
	final, err := apWaitJob(ctx, cl, job.ID, verb)
	if err != nil {
		return err
	}
	if c.json {
		return apPrintJSONThen(final, apPoolOutcome(final))
	}
	var p struct {
		Result json.RawMessage `json:"result"`
	}
	json.Unmarshal(final.Progress, &p)
	var res map[string]any
	json.Unmarshal(p.Result, &res)
	if sum, ok := res["summary"].(string); ok {
		fmt.Println(sum)
	} else if len(p.Result) > 0 {
		fmt.Println(string(p.Result))
	}
	return apPoolOutcome(final)
}

func apPoolOutcome(j *appliance.JobBody) error {
	if j.State != "done" {
		return fmt.Errorf("job %d %s: %s", j.ID, j.State, j.Error)
	}
	return nil
}

func apPrintJSONThen(v any, err error) error {
	if perr := apPrintJSON(v); perr != nil {
		return perr
	}
	return err
}

// apList is an `… ls [--json]` verb: it GETs path, prints the answer as
// JSON with --json, else as a table of header and one row per item.
func apList[T any](ctx context.Context, args []string, verb, path string, header []string, row func(T) []string) error {
	var c apConn
	fs := apFlagSet(verb, verb+" [--json]")
	c.register(fs)
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var items []T
	if err := cl.do(ctx, "GET", path, nil, &items); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(items)
	}
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		rows = append(rows, row(it))
	}
	apTable(header, rows)
	return nil
}
