package main

import (
	"context"
	"strings"
	"testing"
)

// -mode has no default of its own: when it is not given, the cluster's
// stored mode stands, and the help must not claim otherwise.
func TestModeHelpNamesNoDefault(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"serve", "cycle"} {
		_, stdout, _ := runPointsd(t, context.Background(), nil, cmd, "-h")
		i := strings.Index(stdout, "\n  -mode ")
		if i < 0 {
			t.Fatalf("pointsd %s -h has no -mode:\n%s", cmd, stdout)
		}
		help := stdout[i+1:]
		if j := strings.Index(help, "\n  -"); j >= 0 {
			help = help[:j]
		}
		if strings.Contains(help, "(default") {
			t.Errorf("pointsd %s -h claims a default for -mode:\n%s", cmd, help)
		}
		if !strings.Contains(help, "cluster") {
			t.Errorf("pointsd %s -h does not say the cluster's mode stands:\n%s", cmd, help)
		}
	}
}
