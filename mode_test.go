package pointsd_test

import (
	"flag"
	"io"
	"testing"

	"github.com/pointsd/pointsd"
)

// A Mode is a flag: it takes rolling or strict, refuses anything else with
// a line that names both, and prints as its name.
func TestModeIsAFlag(t *testing.T) {
	for _, c := range []struct {
		arg  string
		want pointsd.Mode
		ok   bool
	}{
		{"rolling", pointsd.Rolling, true},
		{"strict", pointsd.Strict, true},
		{"Strict", "", false},
		{"", "", false},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var mode pointsd.Mode
		fs.TextVar(&mode, "mode", mode, "")
		err := fs.Parse([]string{"-mode=" + c.arg})
		if (err == nil) != c.ok || mode != c.want {
			t.Errorf("-mode=%s: %q, %v; want %q (ok %v)", c.arg, mode, err, c.want, c.ok)
		}
		if c.ok && (mode.String() != c.arg || mode.Validate() != nil) {
			t.Errorf("-mode=%s prints as %q, validates %v", c.arg, mode, mode.Validate())
		}
	}
	if err := pointsd.Mode("").Validate(); err == nil || err.Error() != "must be rolling or strict" {
		t.Errorf("the empty mode validates as %v, want must be rolling or strict", err)
	}
}
