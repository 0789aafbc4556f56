package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/doccheck"
)

// The tests of this file keep docs/REFERENCE.md true: its flags against
// pointsd <command> -h and its environment against what this package
// reads. reference_metrics_test.go checks its metrics.

// command runs a command line as main would, and returns its exit status
// and output. (It is this file's own, so that it does not depend on the
// name of main_test.go's helper.)
func command(t *testing.T, ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
	return exitCode(err, &errOut), out.String(), errOut.String()
}

func reference(t *testing.T) string {
	t.Helper()
	md, err := doccheck.Read("docs/REFERENCE.md")
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// helpFlag is a flag as -h prints it: its name and its default ("" when
// -h prints none, as for a zero value).
type helpFlag struct{ name, def string }

var (
	helpFlagLine = regexp.MustCompile(`^  -(\S+)`)
	helpDefault  = regexp.MustCompile(`\(default ([^:)][^)]*)\)$`)
)

func helpFlags(help string) []helpFlag {
	var flags []helpFlag
	for _, l := range strings.Split(help, "\n") {
		if m := helpFlagLine.FindStringSubmatch(l); m != nil {
			flags = append(flags, helpFlag{name: m[1]})
			continue
		}
		if m := helpDefault.FindStringSubmatch(strings.TrimSpace(l)); m != nil && len(flags) > 0 {
			flags[len(flags)-1].def = strings.Trim(m[1], `"`)
		}
	}
	return flags
}

// sameDefault reports whether a documented default means the one -h
// prints: durations as durations, words in any case, a zero for none.
func sameDefault(doc, help string) bool {
	if help == "" {
		return doc == "0" || doc == "false" || doc == ""
	}
	if d, err := time.ParseDuration(doc); err == nil {
		h, err := time.ParseDuration(help)
		return err == nil && d == h
	}
	return strings.EqualFold(doc, help)
}

func TestReferenceFlags(t *testing.T) {
	t.Parallel()
	ref := reference(t)
	_, usage, _ := command(t, context.Background(), nil, "-h")
	_, list, ok := strings.Cut(usage, "Commands:\n")
	if !ok {
		t.Fatalf("pointsd -h lists no commands:\n%s", usage)
	}
	var commands []string
	for _, l := range strings.Split(list, "\n") {
		if strings.TrimSpace(l) == "" {
			break
		}
		commands = append(commands, strings.Fields(l)[0])
	}
	if len(commands) < 7 {
		t.Fatalf("pointsd -h lists %d commands: %q", len(commands), commands)
	}
	for _, cmd := range commands {
		rows, err := doccheck.Table(ref, "`pointsd "+cmd+"`")
		if err != nil {
			t.Errorf("docs/REFERENCE.md: command %s: %v", cmd, err)
			continue
		}
		_, help, _ := command(t, context.Background(), nil, cmd, "-h")
		documented := map[string]string{} // flag name → its default cell
		for _, r := range rows {
			code := doccheck.Code(r[0])
			if len(code) == 0 || !strings.HasPrefix(code[0], "-") {
				t.Errorf("docs/REFERENCE.md: pointsd %s: row %q names no flag", cmd, r)
				continue
			}
			documented[strings.Fields(code[0])[0][1:]] = r[1]
		}
		for _, f := range helpFlags(help) {
			cell, ok := documented[f.name]
			if !ok {
				t.Errorf("docs/REFERENCE.md lacks pointsd %s -%s", cmd, f.name)
				continue
			}
			delete(documented, f.name)
			// A default in code is checked; one in words (this machine's,
			// the cluster's) says what -h cannot.
			if code := doccheck.Code(cell); len(code) == 1 && "`"+code[0]+"`" == cell && !sameDefault(code[0], f.def) {
				t.Errorf("docs/REFERENCE.md: pointsd %s -%s defaults to %s, -h says %q", cmd, f.name, cell, f.def)
			}
		}
		for name := range documented {
			t.Errorf("docs/REFERENCE.md documents pointsd %s -%s, which -h does not list", cmd, name)
		}
	}
}

// Every variable this package reads is in the environment table, and the
// table names no other (but the POINTSD_<FLAG> rule).
func TestReferenceEnvironment(t *testing.T) {
	t.Parallel()
	rows, err := doccheck.Table(reference(t), "Environment")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, r := range rows {
		for _, c := range doccheck.Code(r[0]) {
			documented[c] = true
		}
	}
	delete(documented, "POINTSD_<FLAG>")
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	variable := regexp.MustCompile(`"(DATABASE_URL|POINTSD_[A-Z][A-Z_]*)"`)
	read := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f) //nolint:gosec // G304: a source file of this package
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range variable.FindAllStringSubmatch(string(src), -1) {
			read[m[1]] = true
		}
	}
	for v := range read {
		if !documented[v] {
			t.Errorf("docs/REFERENCE.md's environment lacks %s, which cmd/pointsd reads", v)
		}
	}
	for v := range documented {
		if !read[v] {
			t.Errorf("docs/REFERENCE.md's environment names %s, which cmd/pointsd does not read", v)
		}
	}
}
