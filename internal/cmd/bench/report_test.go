package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// make bench copies the paced run's section of BENCHMARKS-SCALE.md into
// BENCHMARKS.md, a level down, and nothing else of it.
func TestScaleSectionIsCopiedIntoBenchmarks(t *testing.T) {
	dir := t.TempDir()
	if got := section(dir, "BENCHMARKS-SCALE.md", "`serve -period"); got != "" {
		t.Errorf("without BENCHMARKS-SCALE.md: %q, want nothing", got)
	}
	doc := "# title\n\n## What a cycle costs\n\ncurve\n\n## 10M users, `serve -period 30s`, under load\n\nfigures\n\n## Reproduce\n\nmake\n"
	if err := os.WriteFile(filepath.Join(dir, "BENCHMARKS-SCALE.md"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	got := section(dir, "BENCHMARKS-SCALE.md", "`serve -period")
	if want := "### 10M users, `serve -period 30s`, under load\n\nfigures\n"; got != want {
		t.Errorf("section %q, want %q", got, want)
	}
	if strings.Contains(got, "Reproduce") || strings.Contains(got, "curve") {
		t.Errorf("section %q carries other sections", got)
	}
}
