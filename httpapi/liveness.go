package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pointsd/pointsd/pgsql"
)

const (
	// heartbeatEvery is how often the listener NOTIFYs itself.
	heartbeatEvery = time.Second
	// listenerDeadline is how long a heartbeat heard proves the listener
	// alive, counted from when it was sent: it lets two heartbeats in a row
	// be lost or late before the listener is taken for dead. A connection
	// that has heard nothing for this long is closed, to reconnect.
	listenerDeadline = 3 * time.Second
)

// liveness proves the change listener alive without trusting its socket: a
// connection can die silently (a dropped network, a frozen peer) and a
// LISTEN connection never writes, so only hearing from it proves it.
// Every heartbeatEvery the API NOTIFYs a channel of its own through the
// query pool, and the listener must hear it back. The server delivers
// notifications in commit order and the handlers run in order, so a
// heartbeat heard that was sent at t proves every commit before t heard
// and its invalidation applied. The cache counts on the listener until
// listenerDeadline after that t (cache.heardUntil), and otherwise reuses
// an answer for at most unheardMaxAge.
//
// Pinging the connection would prove less: a pong says the socket works,
// not that the server still delivers this session's notifications.
type liveness struct {
	channel string    // this process's heartbeat channel
	epoch   time.Time // payloads are send times since epoch, on the monotonic clock
	cache   *cache
	gauge   prometheus.Gauge
	log     *slog.Logger

	heard     atomic.Int64             // the last heartbeat heard: its send time since epoch; 0 none on this connection
	connected atomic.Int64             // when the current connection was made, since epoch; 0 none
	conn      atomic.Pointer[pgx.Conn] // the current connection, to close when it goes silent
	up        atomic.Bool              // as last reported
	kick      chan struct{}            // sends a heartbeat now: the listener has just begun to listen
}

func newLiveness(c *cache, gauge prometheus.Gauge, log *slog.Logger) *liveness {
	gauge.Set(0)
	return &liveness{channel: "pointsd_heartbeat_" + randomID(), epoch: time.Now(), cache: c, gauge: gauge, log: log,
		kick: make(chan struct{}, 1)}
}

// randomID names something of this process's alone: 16 hex digits.
func randomID() string {
	id := make([]byte, 8)
	_, _ = rand.Read(id) // never fails (crypto/rand)
	return hex.EncodeToString(id)
}

// since returns the monotonic time since epoch.
func (l *liveness) since() int64 { return int64(time.Since(l.epoch)) }

// connectedTo records a new listener connection: it has listenerDeadline to
// hear its first heartbeat.
func (l *liveness) connectedTo(conn *pgx.Conn) {
	l.heard.Store(0)
	l.connected.Store(l.since())
	l.conn.Store(conn)
}

// lost records that the listener's connection failed: it is down at once.
func (l *liveness) lost(err error) {
	l.conn.Store(nil)
	l.connected.Store(0)
	l.heard.Store(0)
	l.cache.heardUntil.Store(nil)
	l.report(false, slog.Any("err", err))
}

// HandleNotification hears a heartbeat.
func (l *liveness) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	sent, err := strconv.ParseInt(n.Payload, 10, 64)
	if err != nil || sent <= l.heard.Load() || sent > l.since() {
		return nil // not one of ours, or older than one heard
	}
	l.heard.Store(sent)
	until := l.epoch.Add(time.Duration(sent) + listenerDeadline)
	l.cache.heardUntil.Store(&until)
	l.report(true)
	return nil
}

// HandleBacklog runs once the listener listens on the heartbeat channel
// (at every connect): a heartbeat sent now proves it at once.
func (l *liveness) HandleBacklog(context.Context, string, *pgx.Conn) error {
	select {
	case l.kick <- struct{}{}:
	default: // one is due already
	}
	return nil
}

// run sends a heartbeat every heartbeatEvery, and at once when the
// listener (re)connects, until ctx ends. It reports the listener down
// when none was heard in time, closing its connection so that it
// reconnects.
func (l *liveness) run(ctx context.Context, db pgsql.DBTX) {
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-l.kick:
		}
		hctx, cancel := context.WithTimeout(ctx, heartbeatEvery)
		_ = pgsql.Notify(hctx, db, l.channel, strconv.FormatInt(l.since(), 10)) // a heartbeat not sent is not heard
		cancel()
		now := l.since()
		if now-max(l.heard.Load(), l.connected.Load()) > int64(listenerDeadline) {
			if conn := l.conn.Swap(nil); conn != nil {
				// Closing the socket under the listener ends its wait with
				// an error: pgxlisten reconnects.
				_ = conn.PgConn().Conn().Close()
			}
		}
		if h := l.cache.heardUntil.Load(); h == nil || !time.Now().Before(*h) {
			l.report(false, slog.Duration("deadline", listenerDeadline))
		}
	}
}

// report logs and exports a change of the listener's state, once per
// change.
func (l *liveness) report(up bool, attrs ...slog.Attr) {
	if l.up.Swap(up) == up {
		return
	}
	if up {
		l.gauge.Set(1)
		l.log.LogAttrs(context.Background(), slog.LevelInfo, "change listener up: its heartbeat is heard", attrs...)
		return
	}
	l.gauge.Set(0)
	l.log.LogAttrs(context.Background(), slog.LevelWarn,
		"change listener down: cached answers are reused for at most "+unheardMaxAge.String()+" after their read", attrs...)
}
