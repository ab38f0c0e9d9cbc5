package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "retention", short: "show what a host's retention policy keeps and removes (preview)", run: runRetentionVerb})
}

func runRetentionVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "retention", args, map[string]func(context.Context, []string) error{
		"preview": retentionPreview,
	}, []string{"preview"})
}

func retentionPreview(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("retention preview", "retention preview HOST [--json]")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("retention preview: want exactly one HOST")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var plan appliance.RetentionPlan
	if err := cl.do(ctx, "GET", "/api/v1/hosts/"+apEsc(pos[0])+"/retention", nil, &plan); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(plan)
	}
	fmt.Printf("host %s: %s\n", plan.Host, plan.Policy)
	srcs := make([]string, 0, len(plan.Sources))
	for s := range plan.Sources {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	var rows [][]string
	for _, s := range srcs {
		sp := plan.Sources[s]
		for _, k := range sp.Keep {
			rows = append(rows, []string{s, k.ID, apTime(k.Time), k.Status, "keep", strings.Join(k.Reasons, ", ")})
		}
		for _, r := range sp.Remove {
			rows = append(rows, []string{s, r.ID, apTime(r.Time), r.Status, "REMOVE", ""})
		}
	}
	apTable([]string{"SOURCE", "SNAPSHOT", "TIME", "STATUS", "ACTION", "WHY"}, rows)
	return nil
}
