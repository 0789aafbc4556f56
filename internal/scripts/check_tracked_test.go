// Package scripts holds the tests of the shell scripts beside them.
package scripts

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckTracked runs check-tracked.sh against throwaway repositories:
// it passes on text and scripts, and fails on a large file or a binary.
func TestCheckTracked(t *testing.T) {
	t.Parallel()
	script, err := filepath.Abs("check-tracked.sh")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		files map[string]string // path → content; a mode of 0755 when the path ends in *
		want  string            // what stderr must say; "" for a pass
	}{
		{"text and a script", map[string]string{"README.md": "hi\n", "run*": "#!/bin/sh\necho hi\n"}, ""},
		{"a file just under the limit", map[string]string{"data.txt": strings.Repeat("x", 1<<20)}, ""},
		{"a file over 1 MB", map[string]string{"data.txt": strings.Repeat("x", 1<<20+1)}, "over 1 MB: data.txt"},
		{"an executable binary", map[string]string{"bench*": "\x7fELF\x02\x01\x01"}, "not a script: bench"},
		{"an executable text without #!", map[string]string{"tool*": "echo hi\n"}, "not a script: tool"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			git(t, dir, "init", "-q")
			for name, content := range c.files {
				mode := os.FileMode(0o644)
				if n, ok := strings.CutSuffix(name, "*"); ok {
					name, mode = n, 0o755
				}
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
					t.Fatal(err)
				}
			}
			git(t, dir, "add", ".")
			var stderr bytes.Buffer
			cmd := exec.CommandContext(t.Context(), script, dir) //nolint:gosec // test: runs the script beside it
			cmd.Stderr = &stderr
			err := cmd.Run()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("failed: %v\n%s", err, &stderr)
			case c.want != "" && err == nil:
				t.Errorf("passed; want a failure saying %q", c.want)
			case c.want != "" && !strings.Contains(stderr.String(), c.want):
				t.Errorf("stderr %q does not say %q", &stderr, c.want)
			}
		})
	}
}

// git runs a git command in dir, failing the test if it fails.
func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", args...) //nolint:gosec // test: git on the test's own repository
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}
