package main

import (
	"context"
	"fmt"
	"net/url"

	"github.com/cairn-backup/cairn/appliance"
)

// hostOnboard prints the shell snippet that grants the appliance's SSH key
// narrow access to a host (GET /api/v1/hosts/{host}/onboard).
func hostOnboard(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("host onboard", "host onboard NAME [--user backup] [--create-user] [--rsync [--path DIR]] [--from ADDRESS] [--json]")
	c.register(fs)
	user := fs.String("user", "backup", "login user on the host")
	create := fs.Bool("create-user", false, "the snippet creates the user if it is missing")
	rsync := fs.Bool("rsync", false, "force the key to `rrsync -ro` (rsync-over-ssh sources)")
	dir := fs.String("path", "", "with --rsync: the directory rrsync confines the key to (default: the host's rsync source path, or /)")
	from := fs.String("from", "", "the appliance's address as the host sees it (default: setting appliance.address, or the address the API was reached on)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("host onboard: want exactly one host NAME")
	}
	if *dir != "" && !*rsync {
		return fmt.Errorf("host onboard: --path goes with --rsync")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	q := url.Values{"user": {*user}}
	if *create {
		q.Set("create_user", "true")
	}
	if *rsync {
		q.Set("rsync", "true")
		if *dir != "" {
			q.Set("path", *dir)
		}
	}
	if *from != "" {
		q.Set("from", *from)
	}
	var out appliance.OnboardBody
	if err := cl.do(ctx, "GET", "/api/v1/hosts/"+apEsc(pos[0])+"/onboard?"+q.Encode(), nil, &out); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(out)
	}
	fmt.Print(out.Script)
	return nil
}
