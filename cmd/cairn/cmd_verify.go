package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "verify", short: "pool check results and restore tests (show|restore-test|schedule)", run: runVerifyVerb})
}

func runVerifyVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "verify", args, map[string]func(context.Context, []string) error{
		"show": verifyShow, "restore-test": verifyRestoreTest, "schedule": verifySchedule,
	}, []string{"show", "restore-test", "schedule"})
}

func printVerify(v appliance.VerifyBody) {
	if s := v.Check; s != nil {
		state := "ok"
		if !s.OK {
			state = "PROBLEMS"
		}
		fmt.Printf("last pool check %s: %s: %s\n", apTime(s.Time), state, s.Summary)
		if s.ReadData {
			fmt.Printf("  data re-read: slice %.3f–%.3f of the pool; %.0f%% covered in this rotation\n", s.SliceFrom, s.SliceTo, 100*s.Coverage)
		}
		for _, a := range s.Affected {
			fmt.Printf("  affected: %s\n", a)
		}
	} else {
		fmt.Println("no pool check yet")
	}
	fmt.Printf("restore tests (schedule %s):\n", v.RestoreTestSchedule)
	var rows [][]string
	for _, r := range v.RestoreTests {
		state := "ok"
		if !r.OK {
			state = "FAILED: " + strings.Join(r.Errors, "; ")
		}
		rows = append(rows, []string{r.Host, apTime(r.Time), fmt.Sprint(r.Files), fmt.Sprint(r.Dumps), state})
	}
	apTable([]string{"HOST", "TIME", "FILES", "DUMPS", "RESULT"}, rows)
}

func verifyShow(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("verify show", "verify show [--json]")
	c.register(fs)
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var v appliance.VerifyBody
	if err := cl.do(ctx, "GET", "/api/v1/verify", nil, &v); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(v)
	}
	printVerify(v)
	return nil
}

// verifyRestoreTest runs restore tests now; non-zero exit when one fails.
func verifyRestoreTest(ctx context.Context, args []string) error {
	var c apConn
	var in appliance.RestoreTestParams
	fs := apFlagSet("verify restore-test", "verify restore-test [HOST] [--files N]")
	c.register(fs)
	fs.IntVar(&in.Files, "files", 0, "files sampled per source (default 20)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("verify restore-test: want at most one HOST")
	}
	if len(pos) == 1 {
		in.Host = pos[0]
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var res []appliance.RestoreTestResult
	if err := cl.do(ctx, "POST", "/api/v1/verify/restore-test", in, &res); err != nil {
		return err
	}
	if c.json {
		if err := apPrintJSON(res); err != nil {
			return err
		}
	}
	var failed []string
	for _, r := range res {
		if !c.json {
			if r.OK {
				fmt.Printf("%s: ok: %d files (%d bytes) and %d dumps read back intact\n", r.Host, r.Files, r.Bytes, r.Dumps)
			} else {
				fmt.Printf("%s: FAILED: %s\n", r.Host, strings.Join(r.Errors, "; "))
			}
		}
		if !r.OK {
			failed = append(failed, r.Host)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("restore test failed for %s", strings.Join(failed, ", "))
	}
	return nil
}

func verifySchedule(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("verify schedule", "verify schedule CRON   (\"-\" disables; default monthly \"0 5 1 * *\")")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("verify schedule: want one cron expression in quotes, e.g. \"0 5 1 * *\"")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var v appliance.VerifyBody
	if err := cl.do(ctx, "PUT", "/api/v1/verify/restore-test/schedule", map[string]string{"schedule": pos[0]}, &v); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(v)
	}
	fmt.Printf("restore tests run on %q\n", v.RestoreTestSchedule)
	return nil
}
