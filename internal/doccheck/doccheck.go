// Package doccheck reads the Markdown of pointsd's docs for the tests that
// keep them true: the tables under a heading, the code spans of a cell, the
// relative links and the anchors a page offers. It knows only the little
// Markdown the docs use, and nothing of what they say.
package doccheck

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"unicode"
)

// Root is the repository's root: the folder above this file's package.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Read returns a file of the repository, by its path from the root.
func Read(path string) (string, error) {
	b, err := os.ReadFile(filepath.Join(Root(), path)) //nolint:gosec // G304: a page of this repository, named by a test
	return string(b), err
}

// Table returns the rows of the first table after the heading whose text is
// heading (without its #s), header and separator left out. Each row is its
// cells, trimmed, with `\|` read as a pipe. It stops at the next heading.
func Table(md, heading string) ([][]string, error) {
	lines := strings.Split(prose(md), "\n")
	start := -1
	for i, l := range lines {
		if h, ok := headingText(l); ok && h == heading {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("no heading %q", heading)
	}
	var rows [][]string
	inTable := false
	for _, l := range lines[start:] {
		if _, ok := headingText(l); ok {
			break
		}
		t := strings.TrimSpace(l)
		if !strings.HasPrefix(t, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		rows = append(rows, cells(t))
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("no table under heading %q", heading)
	}
	return rows[2:], nil
}

func cells(row string) []string {
	row = strings.TrimSuffix(strings.TrimPrefix(row, "|"), "|")
	row = strings.ReplaceAll(row, `\|`, "\x00")
	var out []string
	for _, c := range strings.Split(row, "|") {
		out = append(out, strings.TrimSpace(strings.ReplaceAll(c, "\x00", "|")))
	}
	return out
}

var codeSpan = regexp.MustCompile("`([^`]+)`")

// Code returns the code spans of s, in order.
func Code(s string) []string {
	var out []string
	for _, m := range codeSpan.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

var link = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

// Links returns the relative link targets of md (no scheme, no mailto),
// leaving out code blocks and code spans.
func Links(md string) []string {
	md = codeSpan.ReplaceAllString(prose(md), "")
	var out []string
	for _, m := range link.FindAllStringSubmatch(md, -1) {
		t := m[1]
		if strings.Contains(t, "://") || strings.HasPrefix(t, "mailto:") {
			continue
		}
		out = append(out, t)
	}
	return out
}

// Anchors returns the anchors GitHub makes of md's headings: lower case,
// punctuation dropped, spaces as dashes, and -1, -2… on repeats.
func Anchors(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, l := range strings.Split(prose(md), "\n") {
		h, ok := headingText(l)
		if !ok {
			continue
		}
		a := Slug(h)
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// Slug is a heading's anchor as GitHub makes it.
func Slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func headingText(line string) (string, bool) {
	t := strings.TrimLeft(line, "#")
	if t == line || len(line)-len(t) > 6 || !strings.HasPrefix(t, " ") {
		return "", false
	}
	return strings.TrimSpace(t), true
}

// prose is md with its fenced code blocks blanked, line for line.
func prose(md string) string {
	lines := strings.Split(md, "\n")
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			lines[i] = ""
			continue
		}
		if fenced {
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}
