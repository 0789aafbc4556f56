package main

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/term"
)

// logLevel is the -log-level flag: debug, info, warn or error.
type logLevel struct{ slog.Level }

func (l *logLevel) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "debug", "info", "warn", "error":
		return l.Level.UnmarshalText(b)
	}
	return errBadLevel
}

// MarshalText writes the level as the flag takes it: "info", not "INFO".
func (l logLevel) MarshalText() ([]byte, error) {
	b, err := l.Level.MarshalText()
	return []byte(strings.ToLower(string(b))), err
}

type levelError struct{}

func (levelError) Error() string { return "must be debug, info, warn or error" }

var errBadLevel = levelError{}

// addLogLevel adds the -log-level flag.
func addLogLevel(fs *flag.FlagSet) *logLevel {
	l := &logLevel{slog.LevelInfo}
	fs.TextVar(l, "log-level", l, "least severe log lines written: debug (every request), info, warn or error")
	return l
}

// newLogger logs text on a terminal, JSON otherwise, from level up.
// Durations are written as Go duration strings ("1.5s") in both, not as
// JSON's integer nanoseconds.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Value.Kind() == slog.KindDuration {
			return slog.String(a.Key, a.Value.Duration().String())
		}
		return a
	}}
	if isTerminal(w) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
