package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "audit", short: "which snapshots are on which replication target, gaps and lag", run: runAudit})
}

// runAudit prints, per host and target, the snapshot count, the newest
// complete snapshot, what is missing and the lag. The exit status is
// non-zero when a target lags past its threshold.
func runAudit(ctx context.Context, args []string) error {
	var c apConn
	var cached bool
	fs := apFlagSet("audit", "audit [--cached] [--json]")
	c.register(fs)
	fs.BoolVar(&cached, "cached", false, "use each target's last replication run instead of listing it now")
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	path := "/api/v1/audit"
	if cached {
		path += "?cached=1"
	}
	var a appliance.AuditBody
	if err := cl.do(ctx, "GET", path, nil, &a); err != nil {
		return err
	}
	if c.json {
		if err := apPrintJSON(a); err != nil {
			return err
		}
	} else {
		var rows [][]string
		for _, h := range a.Hosts {
			for _, t := range h.Targets {
				newest := "-"
				if t.NewestComplete != "" {
					newest = t.NewestComplete
				}
				lag := "-"
				if t.Target != "primary" {
					lag = (time.Duration(t.LagSeconds) * time.Second).String()
					if t.Lagging {
						lag += " LAGGING"
					}
				}
				rows = append(rows, []string{h.Host, t.Target, fmt.Sprint(len(t.Snapshots)), fmt.Sprint(len(t.Images)), newest,
					fmt.Sprint(len(t.Missing)), fmt.Sprint(len(t.Gaps)), lag})
			}
		}
		// IMAGES: image snapshots held with their image (counted in
		// SNAPSHOTS too; one whose image is not there is MISSING).
		apTable([]string{"HOST", "TARGET", "SNAPSHOTS", "IMAGES", "NEWEST COMPLETE", "MISSING", "GAPS", "LAG"}, rows)
		for _, t := range a.Targets {
			if !t.Reachable {
				fmt.Printf("target %s (%s): unreachable: %s\n", t.Name, t.Location, t.Error)
			}
		}
	}
	if a.Lagging {
		var lag []string
		for _, h := range a.Hosts {
			for _, t := range h.Targets {
				if t.Lagging {
					lag = append(lag, h.Host+" on "+t.Target)
				}
			}
		}
		return fmt.Errorf("audit: lagging past the threshold: %s", strings.Join(lag, ", "))
	}
	return nil
}
