package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "token", short: "manage API tokens (create|ls|rm)", run: runTokenVerb})
}

func runTokenVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "token", args, map[string]func(context.Context, []string) error{
		"create": tokenCreate, "ls": tokenLs, "rm": tokenRm,
	}, []string{"create", "ls", "rm"})
}

func tokenCreate(ctx context.Context, args []string) error {
	var c apConn
	var user, expires string
	fs := apFlagSet("token create", "token create NAME [--user U] [--expires 30d|720h|2027-01-31T00:00:00Z]")
	c.register(fs)
	fs.StringVar(&user, "user", "", "user the token acts as (default: you; root on the socket must name one)")
	fs.StringVar(&expires, "expires", "", "refuse the token after this lifetime (30d, 720h) or from this RFC 3339 time (default: never)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("token create: want exactly one token NAME")
	}
	in := appliance.TokenInput{Name: pos[0], User: user}
	if expires != "" {
		if _, err := time.Parse(time.RFC3339, expires); err == nil {
			in.Expires = expires
		} else if _, err := appliance.ParseTokenLifetime(expires); err != nil {
			return fmt.Errorf("token create: --expires %v, or an RFC 3339 time like 2027-01-31T00:00:00Z", err)
		} else {
			in.ExpiresIn = expires
		}
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var t appliance.NewTokenBody
	if err := cl.do(ctx, "POST", "/api/v1/tokens", in, &t); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(t)
	}
	exp := "never expires"
	if t.Expires != nil {
		exp = "expires " + apTime(*t.Expires)
	}
	fmt.Fprintf(os.Stderr, "token %d (%s) for %s, %s; it is shown only now:\n", t.ID, t.Name, t.User, exp)
	fmt.Println(t.Token)
	return nil
}

func tokenLs(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("token ls", "token ls [--json]")
	c.register(fs)
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var ts []appliance.TokenBody
	if err := cl.do(ctx, "GET", "/api/v1/tokens", nil, &ts); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(ts)
	}
	var rows [][]string
	for _, t := range ts {
		rows = append(rows, []string{strconv.FormatInt(t.ID, 10), t.Name, t.User, apTime(t.Created), apTimePtr(t.LastUsed), apExpires(t.Expires)})
	}
	apTable([]string{"ID", "NAME", "USER", "CREATED", "LAST USED", "EXPIRES"}, rows)
	return nil
}

// apExpires shows a token's expiry: "never" when it has none.
func apExpires(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return apTime(*t)
}

func tokenRm(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("token rm", "token rm ID")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("token rm: want exactly one token ID (see cairn token ls)")
	}
	if n, err := strconv.ParseInt(pos[0], 10, 64); err != nil || n <= 0 {
		return fmt.Errorf("token rm: %q is not a token ID (see cairn token ls)", pos[0])
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.do(ctx, "DELETE", "/api/v1/tokens/"+pos[0], nil, nil); err != nil {
		return err
	}
	if !c.json {
		fmt.Printf("revoked token %s\n", pos[0])
	}
	return nil
}
