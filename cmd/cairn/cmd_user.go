package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/cairn-backup/cairn/appliance"
)

func init() {
	register(&command{name: "user", short: "manage appliance users (add|ls|rm)", run: runUserVerb})
}

func runUserVerb(ctx context.Context, args []string) error {
	return apSub(ctx, "user", args, map[string]func(context.Context, []string) error{
		"add": userAdd, "ls": userLs, "rm": userRm,
	}, []string{"add", "ls", "rm"})
}

// apReadPassword reads a password from a file ("-" = first line of stdin).
func apReadPassword(file string) (string, error) {
	if file == "" {
		return "", fmt.Errorf("give the password with --password-file FILE (or - for stdin); it is never taken on the command line")
	}
	var line string
	if file == "-" {
		s := bufio.NewScanner(os.Stdin)
		if !s.Scan() {
			return "", fmt.Errorf("no password on stdin")
		}
		line = s.Text()
	} else {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		line, _, _ = strings.Cut(string(b), "\n")
	}
	return strings.TrimRight(line, "\r"), nil
}

func userAdd(ctx context.Context, args []string) error {
	var c apConn
	var role, pwFile string
	var groups apMulti
	fs := apFlagSet("user add", "user add NAME --role admin|operator|user --password-file FILE [--group G]...")
	c.register(fs)
	fs.StringVar(&role, "role", "user", "admin, operator or user")
	fs.StringVar(&pwFile, "password-file", "", "file holding the password (- = stdin)")
	fs.Var(&groups, "group", "group the user belongs to (repeatable; user role sees only its groups' hosts)")
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("user add: want exactly one user NAME")
	}
	pw, err := apReadPassword(pwFile)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var u appliance.UserBody
	if err := cl.do(ctx, "POST", "/api/v1/users", appliance.UserInput{Name: pos[0], Password: pw, Role: role, Groups: groups}, &u); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(u)
	}
	fmt.Printf("added user %s (%s)\n", u.Name, u.Role)
	return nil
}

func userLs(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("user ls", "user ls [--json]")
	c.register(fs)
	if _, err := apParse(fs, args); err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var us []appliance.UserBody
	if err := cl.do(ctx, "GET", "/api/v1/users", nil, &us); err != nil {
		return err
	}
	if c.json {
		return apPrintJSON(us)
	}
	var rows [][]string
	for _, u := range us {
		rows = append(rows, []string{u.Name, u.Role, apOr(strings.Join(u.Groups, ","), "-"), apTime(u.Created)})
	}
	apTable([]string{"USER", "ROLE", "GROUPS", "CREATED"}, rows)
	return nil
}

func userRm(ctx context.Context, args []string) error {
	var c apConn
	fs := apFlagSet("user rm", "user rm NAME")
	c.register(fs)
	pos, err := apParse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("user rm: want exactly one user NAME")
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.do(ctx, "DELETE", "/api/v1/users/"+apEsc(pos[0]), nil, nil); err != nil {
		return err
	}
	if !c.json {
		fmt.Printf("removed user %s and its tokens\n", pos[0])
	}
	return nil
}
