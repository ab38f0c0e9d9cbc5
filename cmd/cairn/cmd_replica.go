package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "replica", short: "replication targets and append-only tokens (add|ls|rm|sync|token)", run: runReplicaVerb})
}

func runReplicaVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "replica", args, map[string]func(context.Context, []string) error{
		"add": replicaAdd, "ls": replicaLs, "rm": replicaRm, "sync": replicaSync, "token": replicaToken,
	}, []string{"add", "ls", "rm", "sync", "token"})
}

func replicaAdd(ctx context.Context, args []string) error {
	var c apConn
	var in appliance.ReplicaTargetInput
	var confFile string
	fs := apFlagSet("replica add", "replica add NAME --kind pool|cairn|rclone --location L [--target-token T] [--rclone-conf FILE] [--keep-… N] [limits]")
	c.register(fs)
	fs.StringVar(&in.Kind, "kind", "pool", "pool (a directory or s3://…), cairn (another appliance) or rclone (a remote of --rclone-conf)")
	fs.StringVar(&in.Location, "location", "", "directory, s3://key:secret@host/bucket/prefix, https://appliance:port, or remote:path")
	fs.StringVar(&in.Token, "target-token", "", "kind cairn: an append-only token of the other appliance (cairn replica token create there)")
	fs.StringVar(&in.TLSFingerprint, "tls-fingerprint", "", "kind cairn: pin the other appliance's certificate by its SHA-256 (AB:CD:…, as cairn serve shows it)")
	fs.StringVar(&confFile, "rclone-conf", "", "kind rclone: the rclone.conf to import (- for stdin); stored encrypted")
	fs.IntVar(&in.Retention.Last, "keep-last", 0, "retention on the target: keep the last N snapshots")
	fs.IntVar(&in.Retention.Hourly, "keep-hourly", 0, "… one per hour for N hours")
	fs.IntVar(&in.Retention.Daily, "keep-daily", 0, "… one per day for N days")
	fs.IntVar(&in.Retention.Weekly, "keep-weekly", 0, "… one per week for N weeks")
	fs.IntVar(&in.Retention.Monthly, "keep-monthly", 0, "… one per month for N months")
	fs.IntVar(&in.Retention.Yearly, "keep-yearly", 0, "… one per year for N years")
	fs.Float64Var(&in.RPS, "rps", 0, "requests per second to the target (0: unlimited)")
	fs.IntVar(&in.Burst, "burst", 0, "request burst with --rps")
	fs.IntVar(&in.Concurrency, "concurrency", 0, "requests in flight and objects copied at once (default 4)")
	fs.Float64Var(&in.BytesPerSecond, "bwlimit", 0, "bytes per second sent (0: unlimited)")
	fs.StringVar(&in.LagAlert, "lag-alert", "", "flag a host whose newest snapshot is not on the target after this long (default 48h)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("replica add: want exactly one target NAME")
	}
	in.Name = pos[0]
	if confFile != "" {
		var b []byte
		if confFile == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(confFile)
		}
		if err != nil {
			return fmt.Errorf("replica add: --rclone-conf: %w", err)
		}
		in.RcloneConf = string(b)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var t appliance.ReplicaTargetStatus
	if err := cl.do(ctx, "POST", "/api/v1/replicas", in, &t); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(t)
	}
	fmt.Printf("added replication target %s (%s %s); new snapshots are copied to it as they are committed\n", t.Name, t.Kind, t.Location)
	return nil
}

func replicaRow(t appliance.ReplicaTargetStatus) []string {
	state := "ok"
	switch {
	case t.Running:
		state = "running"
	case t.LastError != "":
		state = "error: " + t.LastError
	case t.LastRun == nil:
		state = "-"
	}
	return []string{t.Name, t.Kind, t.Location, fmt.Sprint(len(t.Snapshots)), apTimePtr(t.LastSuccess),
		fmt.Sprintf("%d/%d/%d", t.Copied, t.Objects, t.Bytes), state}
}

func replicaLs(ctx context.Context, args []string) error {
	return apList(ctx, args, "replica ls", "/api/v1/replicas",
		[]string{"NAME", "KIND", "LOCATION", "SNAPSHOTS", "LAST SUCCESS", "LAST RUN SNAPS/OBJECTS/BYTES", "STATE"}, replicaRow)
}

func replicaOne(verb string, args []string) (apConn, string, error) {
	var c apConn
	fs := apFlagSet("replica "+verb, "replica "+verb+" NAME")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return c, "", err
	}
	if len(pos) != 1 {
		return c, "", fmt.Errorf("replica %s: want exactly one target NAME (see cairn replica ls)", verb)
	}
	return c, pos[0], nil
}

func replicaRm(ctx context.Context, args []string) error {
	c, name, err := replicaOne("rm", args)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.do(ctx, "DELETE", "/api/v1/replicas/"+name, nil, nil); err != nil {
		return err
	}
	if !c.json {
		fmt.Printf("removed replication target %s (its copy is left as it is)\n", name)
	}
	return nil
}

func replicaSync(ctx context.Context, args []string) error {
	c, name, err := replicaOne("sync", args)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var t appliance.ReplicaTargetStatus
	if err := cl.do(ctx, "POST", "/api/v1/replicas/"+name+"/sync", nil, &t); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(t)
	}
	fmt.Printf("%s: %d snapshots copied (%d objects, %d bytes sent), %d pruned; %d snapshots on the target\n",
		t.Name, t.Copied, t.Objects, t.Bytes, t.Pruned, len(t.Snapshots))
	return nil
}

// replicaToken manages this appliance's append-only tokens (for other
// appliances that replicate here).
func replicaToken(ctx context.Context, args []string) error {
	return apSub(ctx, "replica token", args, map[string]func(context.Context, []string) error{
		"create": func(ctx context.Context, args []string) error {
			var c apConn
			fs := apFlagSet("replica token create", "replica token create NAME")
			c.register(fs)
			pos, err := apParse(fs, args)
			if err != nil {
				return err
			}
			if len(pos) != 1 {
				return fmt.Errorf("replica token create: want exactly one token NAME")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			var t appliance.ReplicaTokenCreated
			if err := cl.do(ctx, "POST", "/api/v1/replica-tokens", map[string]string{"name": pos[0]}, &t); err != nil {
				return err
			}
			if c.json {
				return apPrintJSON(t)
			}
			fmt.Fprintf(os.Stderr, "append-only token %s: it may add to replicas here, never delete or overwrite; shown only now:\n", t.Name)
			fmt.Println(t.Token)
			return nil
		},
		"ls": func(ctx context.Context, args []string) error {
			return apList(ctx, args, "replica token ls", "/api/v1/replica-tokens", []string{"NAME", "CREATED", "POOL"},
				func(t appliance.ReplicaToken) []string {
					return []string{t.Name, apTime(t.Created), apOr(t.Pool, "- (bound on first use)")}
				})
		},
		"rm": func(ctx context.Context, args []string) error {
			var c apConn
			fs := apFlagSet("replica token rm", "replica token rm NAME")
			c.register(fs)
			pos, err := apParse(fs, args)
			if err != nil {
				return err
			}
			if len(pos) != 1 {
				return fmt.Errorf("replica token rm: want exactly one token NAME")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			if err := cl.do(ctx, "DELETE", "/api/v1/replica-tokens/"+pos[0], nil, nil); err != nil {
				return err
			}
			if !c.json {
				fmt.Printf("revoked append-only token %s\n", pos[0])
			}
			return nil
		},
	}, []string{"create", "ls", "rm"})
}
