package httpapi

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// sampledLog writes a message at most once per interval: the first
// occurrence at once, with the attributes of that occurrence, and the
// number of occurrences it stands for since the previous line. A database
// outage fails every request at once; at 17k requests/s one line each was
// 23 MB of log in 5 s.
type sampledLog struct {
	logger   *slog.Logger
	level    slog.Level
	msg      string
	interval time.Duration

	mu      sync.Mutex
	last    time.Time // when the last line was written
	skipped int       // occurrences since then not written
}

// log records one occurrence, and writes a line if interval has passed
// since the last one.
func (s *sampledLog) log(ctx context.Context, attrs ...slog.Attr) {
	s.mu.Lock()
	now := time.Now()
	if now.Sub(s.last) < s.interval {
		s.skipped++
		s.mu.Unlock()
		return
	}
	n := s.skipped + 1
	s.last, s.skipped = now, 0
	s.mu.Unlock()
	s.logger.LogAttrs(ctx, s.level, s.msg, append(attrs, slog.Int("count", n))...)
}
