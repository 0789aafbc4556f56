package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version and revision are stamped by make build (-ldflags -X); without
// them the revision comes from the Go toolchain's VCS stamp, if any.
var (
	version  = "devel"
	revision = ""
)

// buildInfo is what pointsd version prints and pointsd_build_info labels.
type buildInfo struct{ Version, Revision, GoVersion string }

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if b.Revision == "" {
		if info, ok := debug.ReadBuildInfo(); ok {
			dirty := false
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision":
					b.Revision = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if dirty && b.Revision != "" {
				b.Revision += "-dirty"
			}
		}
	}
	if b.Revision == "" {
		b.Revision = "unknown"
	}
	return b
}

func runVersion(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("version", "", "Prints pointsd's version, the commit it was built from and its Go version.")
	if err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	b := readBuildInfo()
	fmt.Fprintf(stdout, "pointsd %s (commit %s, %s)\n", b.Version, b.Revision, b.GoVersion)
	return nil
}
