package pgsql

import (
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// A session is bounded on both ends, so that no fault that leaves a socket
// open (a paused process, a network that drops packets without a reset, a
// frozen proxy) can hold it, and the locks of its transaction, for long:
//
//   - The client probes the server with TCP keepalives and gives up on
//     data the server has not acknowledged after tcpUserTimeout. This
//     works through any pooler.
//   - On a direct connection the server is asked to do the same, and to
//     end a transaction left idle (its client gone mid-transaction) and to
//     bound statements and lock waits, whatever the role's defaults say
//     (a DBA's 500 ms statement_timeout must not cancel every strict
//     cycle). PgBouncer refuses such startup parameters, so sessions that
//     may go through one (the query pool) do not send them.
const (
	keepAliveIdle     = 5 * time.Second
	keepAliveInterval = 2 * time.Second
	keepAliveCount    = 3
	tcpUserTimeout    = 10 * time.Second
)

// Limits bounds a direct session on the server's side. A zero field is left
// at the server's default.
type Limits struct {
	Statement         time.Duration // statement_timeout
	Lock              time.Duration // lock_timeout
	IdleInTransaction time.Duration // idle_in_transaction_session_timeout
}

// ConfigureSession names cfg's sessions name (see SessionName) and bounds
// them: the client's TCP settings always, and, when direct (no pooler in
// between), the server's keepalives and limits.
func ConfigureSession(cfg *pgx.ConnConfig, name string, direct bool, limits Limits) {
	cfg.RuntimeParams["application_name"] = name
	dialer := &net.Dialer{
		Timeout: cfg.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount,
		},
		Control: setUserTimeout,
	}
	cfg.DialFunc = dialer.DialContext
	if !direct {
		return
	}
	p := cfg.RuntimeParams
	p["tcp_keepalives_idle"] = seconds(keepAliveIdle)
	p["tcp_keepalives_interval"] = seconds(keepAliveInterval)
	p["tcp_keepalives_count"] = strconv.Itoa(keepAliveCount)
	p["tcp_user_timeout"] = millis(tcpUserTimeout)
	for k, d := range map[string]time.Duration{
		"statement_timeout":                   limits.Statement,
		"lock_timeout":                        limits.Lock,
		"idle_in_transaction_session_timeout": limits.IdleInTransaction,
	} {
		if d > 0 {
			p[k] = millis(d)
		}
	}
}

func seconds(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) }
func millis(d time.Duration) string  { return strconv.FormatInt(d.Milliseconds(), 10) }
