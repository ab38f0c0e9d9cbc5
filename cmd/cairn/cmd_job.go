package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "job", short: "list, show and cancel appliance jobs (ls|show|cancel)", run: runJobVerb})
}

func runJobVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "job", args, map[string]func(context.Context, []string) error{
		"ls": jobLs, "show": jobShow, "cancel": jobCancel,
	}, []string{"ls", "show", "cancel"})
}

func jobLs(ctx context.Context, args []string) error {
	var c apConn
	var host, state string
	limit := 50
	fs := apFlagSet("job ls", "job ls [--host H] [--state S] [--limit N] [--json]")
	c.register(fs)
	fs.StringVar(&host, "host", "", "only jobs of this host")
	fs.StringVar(&state, "state", "", "only jobs in this state (queued, running, done, failed, cancelled, interrupted)")
	fs.IntVar(&limit, "limit", 50, "newest N jobs (0 = all)")
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	q := fmt.Sprintf("?limit=%d&host=%s&state=%s", limit, apEsc(host), apEsc(state))
	var jobs []appliance.JobBody
	if err := cl.do(ctx, "GET", "/api/v1/jobs"+q, nil, &jobs); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(jobs)
	}
	var rows [][]string
	for _, j := range jobs {
		var p appliance.Progress
		json.Unmarshal(j.Progress, &p)
		rows = append(rows, []string{strconv.FormatInt(j.ID, 10), j.Kind, apOr(j.Host, "-"), j.State,
			apTime(j.Created), apTimePtr(j.Finished), strconv.FormatInt(p.Files, 10), apBytes(p.Bytes), j.Error})
	}
	apTable([]string{"ID", "KIND", "HOST", "STATE", "CREATED", "FINISHED", "FILES", "BYTES", "ERROR"}, rows)
	return nil
}

func apJobID(verb string, pos []string) (string, error) {
	if len(pos) != 1 {
		return "", fmt.Errorf("job %s: want exactly one job ID", verb)
	}
	if n, err := strconv.ParseInt(pos[0], 10, 64); err != nil || n <= 0 {
		return "", fmt.Errorf("job %s: %q is not a job ID (see cairn job ls)", verb, pos[0])
	}
	return pos[0], nil
}

func jobShow(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("job show", "job show ID [--json]")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	id, err := apJobID("show", pos)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var j appliance.JobBody
	if err := cl.do(ctx, "GET", "/api/v1/jobs/"+id, nil, &j); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(j)
	}
	var p appliance.Progress
	json.Unmarshal(j.Progress, &p)
	fmt.Printf("job:      %d (%s)\nhost:     %s\nstate:    %s\ncreated:  %s\nstarted:  %s\nfinished: %s\nprogress: %d files, %s, %d skipped, %d errors\n",
		j.ID, j.Kind, apOr(j.Host, "-"), j.State, apTime(j.Created), apTimePtr(j.Started), apTimePtr(j.Finished),
		p.Files, apBytes(p.Bytes), p.Skipped, p.Errors)
	if j.Error != "" {
		fmt.Printf("error:    %s\n", j.Error)
	}
	for _, e := range j.Events {
		fmt.Printf("  %s %-5s %s\n", apTime(e.Time), e.Level, e.Message)
	}
	return nil
}

func jobCancel(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("job cancel", "job cancel ID")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	id, err := apJobID("cancel", pos)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var j appliance.JobBody
	if err := cl.do(ctx, "POST", "/api/v1/jobs/"+id+"/cancel", nil, &j); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(j)
	}
	fmt.Printf("job %d %s\n", j.ID, j.State)
	return nil
}
