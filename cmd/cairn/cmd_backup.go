package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "backup", short: "run and list backups on the appliance (run|ls)", run: runBackupVerb})
}

func runBackupVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "backup", args, map[string]func(context.Context, []string) error{
		"run": backupRun, "ls": backupLs,
	}, []string{"run", "ls"})
}

func backupRun(ctx context.Context, args []string) error {
	var c apConn
	var sources apMulti
	wait := false
	fs := apFlagSet("backup run", "backup run HOST [--source NAME]... [--wait]")
	c.register(fs)
	fs.Var(&sources, "source", "back up only this source (repeatable)")
	fs.BoolVar(&wait, "wait", false, "wait for the job, showing progress; fail if the backup fails")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("backup run: want exactly one HOST")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var job appliance.JobBody
	if err := cl.do(ctx, "POST", "/api/v1/hosts/"+apEsc(pos[0])+"/backup", appliance.BackupInput{Sources: sources}, &job); err != nil {
		return err
	}
	if !wait {
		if c.json {
			return apPrintJSON(job)
		}
		fmt.Printf("queued backup of %s as job %d\n", pos[0], job.ID)
		return nil
	}
	final, err := apWaitJob(ctx, cl, job.ID, "backup "+pos[0])
	if err != nil {
		return err
	}
	if c.json {
		if err := apPrintJSON(final); err != nil {
			return err
		}
	}
	return apJobResult(final)
}

// apWaitJob follows a job until it ends, drawing its progress on stderr.
// Interrupting the wait (Ctrl-C) leaves the job running.
func apWaitJob(ctx context.Context, cl *apClient, id int64, verb string) (*appliance.JobBody, error) {
	var pr *progress
	defer func() {
		if pr != nil {
			pr.Stop()
		}
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		var j appliance.JobBody
		if err := cl.do(ctx, "GET", "/api/v1/jobs/"+strconv.FormatInt(id, 10), nil, &j); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("stopped waiting; job %d goes on (cairn job ls, cairn job cancel %d)", id, id)
			}
			return nil, err
		}
		var p appliance.Progress
		json.Unmarshal(j.Progress, &p)
		if j.State == "running" && pr == nil {
			pr = newProgress(verb, p.BytesTotal)
			pr.Start()
		}
		if pr != nil {
			pr.Set(progressState{Files: p.Files, Bytes: p.Bytes, Skipped: p.Skipped, Errors: p.Errors, Path: p.Path})
		}
		switch j.State {
		case "done", "failed", "cancelled", "interrupted":
			return &j, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped waiting; job %d goes on (cairn job ls, cairn job cancel %d)", id, id)
		case <-tick.C:
		}
	}
}

// apJobResult turns a finished job into the verb's outcome.
func apJobResult(j *appliance.JobBody) error {
	var p appliance.Progress
	json.Unmarshal(j.Progress, &p)
	if j.State != "done" {
		return fmt.Errorf("job %d %s: %s", j.ID, j.State, j.Error)
	}
	fmt.Fprintf(os.Stderr, "job %d done: %d files, %s", j.ID, p.Files, apBytes(p.Bytes))
	if p.Errors > 0 {
		fmt.Fprintf(os.Stderr, ", %d per-file errors (snapshot is partial)", p.Errors)
	}
	fmt.Fprintln(os.Stderr)
	return nil
}

func backupLs(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("backup ls", "backup ls [HOST] [--json]")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("backup ls: at most one HOST")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	q := ""
	if len(pos) == 1 {
		var h appliance.HostBody // a clear error for an unknown host
		if err := cl.do(ctx, "GET", "/api/v1/hosts/"+apEsc(pos[0]), nil, &h); err != nil {
			return err
		}
		q = "?host=" + apEsc(pos[0])
	}
	var snaps []appliance.SnapshotBody
	if err := cl.do(ctx, "GET", "/api/v1/snapshots"+q, nil, &snaps); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(snaps)
	}
	var rows [][]string
	for _, s := range snaps {
		rows = append(rows, []string{s.ID, s.Host, s.Source, apTime(s.Finished), s.Status,
			strconv.FormatInt(s.Files, 10), apBytes(s.Bytes), apBytes(s.BytesNew)})
	}
	apTable([]string{"SNAPSHOT", "HOST", "SOURCE", "FINISHED", "STATUS", "FILES", "SIZE", "NEW"}, rows)
	return nil
}
