package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "instance", short: "list the appliance instances sharing the catalog (ls)", run: runInstanceVerb})
}

func runInstanceVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "instance", args, map[string]func(context.Context, []string) error{
		"ls": instanceLs,
	}, []string{"ls"})
}

func instanceLs(ctx context.Context, args []string) error {
	return apList(ctx, args, "instance ls", "/api/v1/instances",
		[]string{"ID", "STATE", "HOST", "ADDR", "STARTED", "HEARTBEAT", "JOBS", "LOAD", "RUNNING"},
		func(in appliance.InstanceBody) []string {
			id := in.ID
			if in.Self {
				id += " *"
			}
			jobs := make([]string, len(in.Jobs))
			for i, j := range in.Jobs {
				jobs[i] = strconv.FormatInt(j, 10)
			}
			return []string{id, in.State, apOr(in.Host, "-"), apOr(in.Addr, "-"), apTime(in.Started),
				apTime(in.LastHeartbeat), fmt.Sprintf("%d/%d", in.Running, in.Capacity), strconv.FormatFloat(in.Load, 'f', 2, 64),
				apOr(strings.Join(jobs, ","), "-")}
		})
}
