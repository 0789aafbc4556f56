package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// newFlagSet makes a flag set that reports errors to run, not to stderr.
func newFlagSet(cmd, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("pointsd "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: pointsd %s\n\n%s\n", strings.TrimSpace(cmd+" "+args), summary)
		flags := 0
		fs.VisitAll(func(*flag.Flag) { flags++ })
		if flags > 0 {
			fmt.Fprint(w, "\nFlags (each also POINTSD_<FLAG> in the environment; the command line wins):\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args, then fills every flag not given on the command line
// from POINTSD_<FLAG> (dashes become underscores). -h prints usage to stdout.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer) error {
	return parseFlagsArgs(fs, args, getenv, stdout, 0)
}

// parseFlagsArgs is parseFlags for a command that takes up to maxArgs
// arguments after its flags (fs.Args()).
func parseFlagsArgs(fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer, maxArgs int) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return err
	}
	if err != nil {
		return usageError{fmt.Sprintf("%s: %v (see %s -h)", fs.Name(), err, fs.Name())}
	}
	if fs.NArg() > maxArgs {
		return usageError{fmt.Sprintf("%s: unexpected argument %q (see %s -h)", fs.Name(), fs.Arg(maxArgs), fs.Name())}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		key := envName(f.Name)
		v := getenv(key)
		if given[f.Name] || v == "" || envErr != nil {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			envErr = usageError{fmt.Sprintf("%s: invalid value %q for %s (flag -%s): %v", fs.Name(), v, key, f.Name, err)}
		}
	})
	return envErr
}

func envName(flagName string) string {
	return "POINTSD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// isSet reports whether the flag was given, on the command line or in the
// environment.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
