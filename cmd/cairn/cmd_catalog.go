package main

import (
	"context"
	"fmt"
	"os"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "catalog", short: "maintain the appliance catalog (rebuild)", run: runCatalogVerb})
}

func runCatalogVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "catalog", args, map[string]func(context.Context, []string) error{
		"rebuild": catalogRebuild,
	}, []string{"rebuild"})
}

func catalogRebuild(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("catalog rebuild", "catalog rebuild [--json]")
	c.register(fs)
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var out appliance.RebuildBody
	if err := cl.do(ctx, "POST", "/api/v1/catalog/rebuild", nil, &out); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(out)
	}
	fmt.Printf("indexed %d snapshots from the pool's manifests\n", out.Snapshots)
	for _, b := range out.Bad {
		fmt.Fprintf(os.Stderr, "unreadable manifest: %s\n", b)
	}
	if len(out.Bad) > 0 {
		return fmt.Errorf("%d manifests could not be read (run cairn pool check)", len(out.Bad))
	}
	return nil
}
