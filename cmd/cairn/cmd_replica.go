package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "replica", short: "replication targets, append-only tokens, keys of received replicas (add|ls|rm|sync|token|key)", run: runReplicaVerb})
}

func runReplicaVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "replica", args, map[string]func(context.Context, []string) error{
		"add": replicaAdd, "ls": replicaLs, "rm": replicaRm, "sync": replicaSync, "token": replicaToken, "key": replicaKey,
	}, []string{"add", "ls", "rm", "sync", "token", "key"})
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

// replicaKey manages the keys of encrypted replicas this appliance
// receives from other appliances. By default they stay on the primary.
func replicaKey(ctx context.Context, args []string) error {
	one := func(verb string, args []string, extra func(*flag.FlagSet)) (*apClient, *apConn, string, error) {
		var c apConn
		fs := apFlagSet("replica key "+verb, "replica key "+verb+" POOL-ID")
		c.register(fs)
		if extra != nil {
			extra(fs)
		}
		pos, err := apParse(fs, args)
		if err != nil {
			return nil, nil, "", err
		}
		if len(pos) != 1 {
			return nil, nil, "", fmt.Errorf("replica key %s: want the UUID of the replicated pool (ls DATA/replicas)", verb)
		}
		cl, err := c.client()
		if err != nil {
			return nil, nil, "", err
		}
		return cl, &c, pos[0], nil
	}
	show := func(c *apConn, st appliance.ReplicaKeyStatus) error {
		if c.json {
			return apPrintJSON(st)
		}
		state := func(enc, held bool) string {
			switch {
			case !enc:
				return "not encrypted"
			case held:
				return "encrypted, key held (sealed)"
			}
			return "encrypted, key not held (only the primary can read it)"
		}
		fmt.Printf("replica %s: file pool %s\n", st.Pool, state(st.Encrypted, st.Key))
		if st.Images {
			fmt.Printf("replica %s: image pool %s\n", st.Pool, state(st.ImagesEncrypted, st.ImagesKey))
		}
		return nil
	}
	return apSub(ctx, "replica key", args, map[string]func(context.Context, []string) error{
		"import": func(ctx context.Context, args []string) error {
			var keyFile, imagesKeyFile string
			cl, c, id, err := one("import", args, func(fs *flag.FlagSet) {
				fs.StringVar(&keyFile, "key-file", "", "the primary's pool key file (its DATA/pool.key)")
				fs.StringVar(&imagesKeyFile, "images-key-file", "", "the primary's image pool key file (its DATA/images.key)")
			})
			if err != nil {
				return err
			}
			if keyFile == "" && imagesKeyFile == "" {
				return fmt.Errorf("replica key import: give --key-file and/or --images-key-file")
			}
			var in appliance.ReplicaKeyInput
			for _, f := range []struct {
				path string
				dst  *string
			}{{keyFile, &in.Key}, {imagesKeyFile, &in.ImagesKey}} {
				if f.path == "" {
					continue
				}
				b, err := os.ReadFile(f.path)
				if err != nil {
					return fmt.Errorf("replica key import: %w", err)
				}
				*f.dst = strings.TrimSpace(string(b))
			}
			var st appliance.ReplicaKeyStatus
			if err := cl.do(ctx, "PUT", "/api/v1/replica/"+apEsc(id)+"/key", in, &st); err != nil {
				return err
			}
			return show(c, st)
		},
		"show": func(ctx context.Context, args []string) error {
			cl, c, id, err := one("show", args, nil)
			if err != nil {
				return err
			}
			var st appliance.ReplicaKeyStatus
			if err := cl.do(ctx, "GET", "/api/v1/replica/"+apEsc(id)+"/key", nil, &st); err != nil {
				return err
			}
			return show(c, st)
		},
		"rm": func(ctx context.Context, args []string) error {
			cl, c, id, err := one("rm", args, nil)
			if err != nil {
				return err
			}
			if err := cl.do(ctx, "DELETE", "/api/v1/replica/"+apEsc(id)+"/key", nil, nil); err != nil {
				return err
			}
			if !c.json {
				fmt.Printf("forgot the keys of replica %s: it is ciphertext here again\n", id)
			}
			return nil
		},
	}, []string{"import", "show", "rm"})
}
