package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// version is stamped by the Makefile with -ldflags "-X main.version=…".
var version = "dev"

// A command is one top-level verb. Verb files register themselves in init
// (cmd_serve.go, cmd_pool.go, …) so that this file never grows a switch.
type command struct {
	name  string // "serve", "pool", …
	short string // one line for `cairn help`
	run   func(ctx context.Context, args []string) error
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("cairn: duplicate command " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error that was already explained by a flag set's usage output.
var errUsage = errors.New("usage")

func init() {
	register(&command{name: "version", short: "print the version", run: func(ctx context.Context, args []string) error {
		fmt.Println("cairn", version)
		return nil
	}})
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: cairn <command> [flags] [args]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].short)
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(os.Stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "cairn: unknown command %q (see `cairn help`)\n", args[0])
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := c.run(ctx, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if errors.Is(err, errUsage) {
			return 2
		}
		fmt.Fprintf(os.Stderr, "cairn %s: %s\n", c.name, strings.TrimSpace(err.Error()))
		return 1
	}
	return 0
}
