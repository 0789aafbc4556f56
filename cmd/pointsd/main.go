// Command pointsd keeps a table of users whose points are re-drawn every
// period and answers queries for users above the qualifying floor. This
// package is wiring only: flags, logging, signals and exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

const usage = `pointsd keeps users' points re-drawn every period in PostgreSQL and serves
the users above the qualifying floor.

Usage: pointsd <command> [flags]

Commands:
  migrate   create or upgrade the schema
  seed      make exactly N users exist
  cycle     run one update cycle now and exit
  serve     migrate, serve HTTP and, when leader, run the updater
  mode      print the cluster's update mode, or set it: pointsd mode strict|rolling
  size      print the partitions, workers and settings N users need
  version   print the version, commit and Go version (also -version)

The database is DATABASE_URL (a libpq URL or key=value string).
Run 'pointsd <command> -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// run is the whole program, minus the process: tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"pointsd: missing command"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout, stderr)
	case "seed":
		return runSeed(ctx, rest, getenv, stdout, stderr)
	case "cycle":
		return runCycle(ctx, rest, getenv, stdout, stderr)
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "mode":
		return runMode(ctx, rest, getenv, stdout, stderr)
	case "size":
		return runSize(rest, getenv, stdout)
	case "version", "-version", "--version":
		return runVersion(rest, getenv, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Sprintf("pointsd: unknown command %q (want migrate, seed, cycle, serve, mode, size or version)", cmd)}
}

// exitCode prints err as one line and maps it to the exit status: 0, 2 for
// usage errors, 1 for everything else.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, oneLine(err))
		return 2
	default:
		fmt.Fprintln(stderr, "pointsd: "+oneLine(err))
		return 1
	}
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
