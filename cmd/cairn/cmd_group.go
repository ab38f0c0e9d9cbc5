package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "group", short: "manage host/user groups and their template settings (add|ls|set|rm|defaults)", run: runGroupVerb})
}

func runGroupVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "group", args, map[string]func(context.Context, []string) error{
		"add": groupAdd, "ls": groupLs, "set": groupSet, "rm": groupRm, "defaults": groupDefaults,
	}, []string{"add", "ls", "set", "rm", "defaults"})
}

// apSettings parses KEY=VALUE arguments (template settings: schedule,
// jitter, blackout, keep_last … keep_yearly).
func apSettings(args []string) (map[string]string, error) {
	m := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("setting %q: want KEY=VALUE (keys: schedule, jitter, blackout, keep_last … keep_yearly)", a)
		}
		m[k] = v
	}
	return m, nil
}

func apFormatSettings(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return apOr(strings.Join(parts, " "), "-")
}

func groupAdd(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("group add", "group add NAME [KEY=VALUE]...")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 {
		return fmt.Errorf("group add: want a group NAME")
	}
	settings, err := apSettings(pos[1:])
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var g appliance.GroupBody
	if err := cl.do(ctx, "POST", "/api/v1/groups", appliance.GroupBody{Name: pos[0], Settings: settings}, &g); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(g)
	}
	fmt.Printf("added group %s\n", g.Name)
	return nil
}

func groupSet(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("group set", "group set NAME [KEY=VALUE]...   (replaces the group's settings)")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 {
		return fmt.Errorf("group set: want a group NAME")
	}
	settings, err := apSettings(pos[1:])
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var g appliance.GroupBody
	if err := cl.do(ctx, "PUT", "/api/v1/groups/"+apEsc(pos[0]), appliance.SettingsBody{Settings: settings}, &g); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(g)
	}
	fmt.Printf("group %s: %s\n", g.Name, apFormatSettings(g.Settings))
	return nil
}

func groupLs(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("group ls", "group ls [--json]")
	c.register(fs)
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var gs []appliance.GroupBody
	if err := cl.do(ctx, "GET", "/api/v1/groups", nil, &gs); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(gs)
	}
	var rows [][]string
	for _, g := range gs {
		rows = append(rows, []string{g.Name, apFormatSettings(g.Settings)})
	}
	apTable([]string{"GROUP", "SETTINGS"}, rows)
	return nil
}

func groupRm(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("group rm", "group rm NAME")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("group rm: want exactly one group NAME")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.do(ctx, "DELETE", "/api/v1/groups/"+apEsc(pos[0]), nil, nil); err != nil {
		return err
	}
	if !c.json {
		fmt.Printf("removed group %s\n", pos[0])
	}
	return nil
}

// groupDefaults shows or (with KEY=VALUE arguments) replaces the global
// defaults every host inherits last.
func groupDefaults(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("group defaults", "group defaults [KEY=VALUE]...   (no arguments: show)")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var out appliance.SettingsBody
	if len(pos) == 0 {
		err = cl.do(ctx, "GET", "/api/v1/defaults", nil, &out)
	} else {
		settings, perr := apSettings(pos)
		if perr != nil {
			return perr
		}
		err = cl.do(ctx, "PUT", "/api/v1/defaults", appliance.SettingsBody{Settings: settings}, &out)
	}
	if err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(out)
	}
	fmt.Printf("defaults: %s\n", apFormatSettings(out.Settings))
	return nil
}
