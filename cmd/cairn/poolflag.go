package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/cairn-backup/cairn/pool"
)

// errNoPool is returned by direct verbs run without --pool or CAIRN_POOL
// when no appliance client is linked in to take over.
var errNoPool = errors.New("no --pool given and no appliance client available")

// poolFlags are the flags every direct verb shares: where the pool is and
// the key of an encrypted one. The environment supplies defaults
// (CAIRN_POOL, CAIRN_KEY_FILE) so scripts need not repeat them.
type poolFlags struct {
	loc     string
	keyFile string
}

func addPoolFlags(fs *flag.FlagSet) *poolFlags {
	pf := &poolFlags{}
	fs.StringVar(&pf.loc, "pool", "", "pool location: a directory or s3://host/bucket[/prefix] (default $CAIRN_POOL)")
	fs.StringVar(&pf.keyFile, "key-file", "", "key file of an encrypted pool (default $CAIRN_KEY_FILE)")
	return pf
}

// poolGiven reports whether args or the environment name a pool. Verbs
// with an appliance form decide with it before parsing their flags, so
// the appliance client's own flags (--server, --data, …) reach it.
func poolGiven(args []string) bool {
	if os.Getenv("CAIRN_POOL") != "" {
		return true
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "pool" {
			return true
		}
	}
	return false
}

// location returns the pool location from the flag or CAIRN_POOL; "" when
// neither is set.
func (pf *poolFlags) location() string {
	if pf.loc != "" {
		return pf.loc
	}
	return os.Getenv("CAIRN_POOL")
}

func (pf *poolFlags) key() string {
	if pf.keyFile != "" {
		return pf.keyFile
	}
	return os.Getenv("CAIRN_KEY_FILE")
}

// open opens the existing pool. A missing directory or identity file is
// reported as "no cairn pool at …".
func (pf *poolFlags) open(ctx context.Context) (*pool.Pool, error) {
	loc := pf.location()
	if loc == "" {
		return nil, errNoPool
	}
	b, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{})
	if err != nil {
		if errors.Is(err, pool.ErrNotFound) {
			return nil, fmt.Errorf("no cairn pool at %s: the directory does not exist (create one with `cairn pool init --pool %s`)", pool.RedactLocation(loc), pool.RedactLocation(loc))
		}
		return nil, fmt.Errorf("open pool %s: %w", pool.RedactLocation(loc), err)
	}
	p, err := pool.Open(ctx, b, pool.OpenOptions{KeyFile: pf.key()})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// create makes a new pool (pool init).
func (pf *poolFlags) create(ctx context.Context, encrypt bool) (*pool.Pool, error) {
	loc := pf.location()
	if loc == "" {
		return nil, errors.New("no --pool given: say where the new pool goes (a directory or s3://…)")
	}
	if encrypt && pf.key() == "" {
		return nil, errors.New("--encrypt needs --key-file F: where to write the new key (keep a copy: without it nothing can be restored)")
	}
	b, err := pool.OpenBackend(ctx, loc, pool.OpenBackendOptions{Create: true})
	if err != nil {
		return nil, fmt.Errorf("open storage %s: %w", pool.RedactLocation(loc), err)
	}
	return pool.Init(ctx, b, pool.InitOptions{Encrypt: encrypt, KeyFile: pf.key()})
}

// parseFlags parses flags that may come before or after the positional
// arguments (`cairn ls SNAP --json`), which package flag alone does not
// allow, and maps flag errors to errUsage (the flag set printed them).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	var err error
	for {
		if err = fs.Parse(args); err != nil {
			break
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	return pos, nil
}
