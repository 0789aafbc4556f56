package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd/internal/pgtest"
)

// cut lets a test break the listener's network: freeze its connections
// (sockets stay open, no byte passes: a dropped network, a frozen peer)
// and refuse new ones.
type cut struct {
	frozen, refused atomic.Bool
}

// install makes a's listener connect through c.
func (c *cut) install(a *API) {
	a.connectListener = func(ctx context.Context) (*pgx.Conn, error) {
		if c.refused.Load() {
			return nil, errors.New("test: the network is down")
		}
		cfg := a.cfg.Pool.Config().ConnConfig.Copy()
		cfg.RuntimeParams["application_name"] = "pointsd-listen"
		dial := cfg.DialFunc
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if c.refused.Load() { // pgx's cancel requests dial too
				return nil, errors.New("test: the network is down")
			}
			conn, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &freezable{Conn: conn, cut: c, closed: make(chan struct{})}, nil
		}
		return pgx.ConnectConfig(ctx, cfg)
	}
}

// freezable is a connection that, while its cut is frozen, reads nothing
// until it is closed and writes into the void.
type freezable struct {
	net.Conn
	cut    *cut
	once   sync.Once
	closed chan struct{}
}

func (f *freezable) Read(b []byte) (int, error) {
	if f.cut.frozen.Load() {
		<-f.closed
		return 0, net.ErrClosed
	}
	return f.Conn.Read(b)
}

func (f *freezable) Write(b []byte) (int, error) {
	if f.cut.frozen.Load() {
		return len(b), nil
	}
	return f.Conn.Write(b)
}

func (f *freezable) Close() error {
	f.once.Do(func() { close(f.closed) })
	return f.Conn.Close()
}

// newCutAPI serves an API whose listener connects through a cut, logging
// to the returned buffer; its listener is proven alive on return.
func newCutAPI(t *testing.T) (*API, string, *cut, *pgtest.SyncBuffer) {
	t.Helper()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 2, Users: 100})
	if _, err := pgtest.Pool(t, url).Exec(context.Background(), `
		WITH u AS (UPDATE users SET points = 50)
		UPDATE cycle_state SET floor = 10, next_start = now() + interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	var logs pgtest.SyncBuffer
	a, srv := newAPI(t, url, Config{CacheMaxAge: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := &cut{}
	c.install(a)
	listen(t, a)
	return a, srv.URL, c, &logs
}

// A listener whose network silently stops passing bytes is reported down
// within listenerDeadline and a heartbeat (once: one log line, the metric,
// /status); meanwhile an answer is reused for at most unheardMaxAge, so a
// commit whose NOTIFY is lost shows within it. When the network is back,
// the silent connection has been closed and a new one is proven alive.
func TestSilentListenerIsReportedDownAndAnswersAreReadAgain(t *testing.T) {
	t.Parallel()
	a, base, c, logs := newCutAPI(t)
	ctx := context.Background()
	if up := testutil.ToFloat64(a.cfg.Metrics.ListenerUp); up != 1 {
		t.Fatalf("pointsd_listener_up %v while the listener is heard, want 1", up)
	}
	_, st := get(t, base+"/status")
	if st["listener_up"] != true || st["clock_offset_seconds"] == nil || st["clock_uncertainty_seconds"] == nil {
		t.Fatalf("/status %v: want listener_up true and the clock's offset", st)
	}
	if n, err := testutil.GatherAndCount(a.cfg.Metrics.Registry, "pointsd_clock_offset_seconds", "pointsd_clock_uncertainty_seconds"); err != nil || n != 2 {
		t.Fatalf("the clock's metrics: %d series, %v; want 2", n, err)
	}
	get(t, base+"/")
	first := a.cache.current.Load()
	time.Sleep(2 * unheardMaxAge) // past unheardMaxAge: reuse now rests on the listener
	if get(t, base+"/"); a.cache.current.Load() != first {
		t.Fatal("the answer was read again while the listener is alive and the schedule holds")
	}

	c.refused.Store(true)
	c.frozen.Store(true)
	frozenAt := time.Now()
	pgtest.Eventually(t, 10*time.Second, "the frozen listener was not reported down", func() bool {
		return testutil.ToFloat64(a.cfg.Metrics.ListenerUp) == 0
	})
	if took := time.Since(frozenAt); took > listenerDeadline+2*heartbeatEvery {
		t.Errorf("reported down %v after the freeze, want within %v", took, listenerDeadline+2*heartbeatEvery)
	}
	if _, st := get(t, base+"/status"); st["listener_up"] != false {
		t.Errorf("/status listener_up %v while the listener is down", st["listener_up"])
	}
	// A commit the listener cannot hear: within unheardMaxAge it shows.
	if _, err := a.cfg.Pool.Exec(ctx, `UPDATE cycle_state SET floor = 100`); err != nil {
		t.Fatal(err)
	}
	if _, err := a.cfg.Pool.Exec(ctx, `SELECT pg_notify('pointsd_changes', '-1')`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(unheardMaxAge)
	if _, body := get(t, base+"/"); len(body["users"].([]any)) != 0 {
		t.Fatalf("unheardMaxAge after the floor rose to 100, unheard: %v, want no users", body["users"])
	}
	read := a.cache.current.Load()
	time.Sleep(2 * unheardMaxAge)
	if get(t, base+"/"); a.cache.current.Load() == read {
		t.Error("with the listener down, an answer was reused past unheardMaxAge")
	}

	c.frozen.Store(false)
	c.refused.Store(false)
	pgtest.Eventually(t, 10*time.Second, "the listener did not come back", func() bool {
		return testutil.ToFloat64(a.cfg.Metrics.ListenerUp) == 1
	})
	if down, up := strings.Count(logs.String(), "change listener down"), strings.Count(logs.String(), "change listener up"); down != 1 || up != 2 {
		t.Errorf("logged down %d and up %d times, want 1 and 2 (one per change):\n%s", down, up, logs)
	}
}

// A listener whose backend is terminated is reported down at once, by the
// error, without waiting for a heartbeat's deadline; and up again once it
// reconnects.
func TestTerminatedListenerIsReportedDownAtOnce(t *testing.T) {
	t.Parallel()
	a, _, c, _ := newCutAPI(t)
	c.refused.Store(true)
	var n int
	if err := a.cfg.Pool.QueryRow(context.Background(), `
		SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'pointsd-listen' AND datname = current_database()`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("terminated %d listener backends, %v; want 1", n, err)
	}
	pgtest.Eventually(t, listenerDeadline-heartbeatEvery, "the terminated listener was not reported down before its deadline", func() bool {
		return testutil.ToFloat64(a.cfg.Metrics.ListenerUp) == 0
	})
	if h := a.cache.heardUntil.Load(); h != nil {
		t.Errorf("the cache still counts on the listener until %v", h)
	}
	c.refused.Store(false)
	pgtest.Eventually(t, 10*time.Second, "the listener did not come back", func() bool {
		return testutil.ToFloat64(a.cfg.Metrics.ListenerUp) == 1
	})
}
