package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "maintenance", short: "pause scheduled backups and refuse new jobs (on|off|status)", run: runMaintenanceVerb})
}

func runMaintenanceVerb(ctx context.Context, args []string) error {
	set := func(on bool) func(context.Context, []string) error {
		return func(ctx context.Context, args []string) error { return maintenanceSet(ctx, args, on) }
	}
	return apSub(ctx, "maintenance", args, map[string]func(context.Context, []string) error{
		"on": set(true), "off": set(false), "status": maintenanceStatus,
	}, []string{"on", "off", "status"})
}

func maintenanceSet(ctx context.Context, args []string, on bool) error {
	var c apConn
	var reason string
	fs := apFlagSet("maintenance", "maintenance on [--reason TEXT] | off")
	c.register(fs)
	fs.StringVar(&reason, "reason", "", "why (shown to whoever tries to start a job)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		reason = strings.TrimSpace(reason + " " + strings.Join(pos, " "))
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var m appliance.MaintenanceBody
	if err := cl.do(ctx, "PUT", "/api/v1/maintenance", appliance.MaintenanceBody{On: on, Reason: reason}, &m); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(m)
	}
	if m.On {
		fmt.Println("maintenance mode on: scheduled backups paused, new jobs refused; running jobs finish, restores work")
	} else {
		fmt.Println("maintenance mode off")
	}
	return nil
}

func maintenanceStatus(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("maintenance status", "maintenance status [--json]")
	c.register(fs)
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var m appliance.MaintenanceBody
	if err := cl.do(ctx, "GET", "/api/v1/maintenance", nil, &m); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(m)
	}
	if !m.On {
		fmt.Println("maintenance mode off")
		return nil
	}
	fmt.Printf("maintenance mode on since %s by %s: %s\n", apTime(m.Since), m.By, apOr(m.Reason, "(no reason given)"))
	return nil
}
