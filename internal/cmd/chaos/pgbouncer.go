package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/pointsd/pointsd/internal/localpg"
)

// pgbouncer is Debian's PgBouncer in transaction mode in front of the
// harness's PostgreSQL, run as the postgres user with an ini of its own.
type pgbouncer struct {
	cmd  *exec.Cmd
	port int
	log  string
	done chan struct{}
}

// pgbouncerIni: transaction pooling, trusting local connections as the
// server behind it does (see localpg), loopback only.
const pgbouncerIni = `[databases]
%[1]s = host=127.0.0.1 port=%[2]d dbname=%[1]s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %[3]d
unix_socket_dir =
auth_type = trust
auth_file = %[4]s/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 40
logfile = %[4]s/pgbouncer.log
pidfile = %[4]s/pgbouncer.pid
`

// startPgbouncer writes the ini in dir and starts pgbouncer, waiting until
// it accepts connections.
func startPgbouncer(ctx context.Context, dir string, pgPort int) (*pgbouncer, error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return nil, errors.New("pgbouncer is not installed (make chaos installs it: apt-get install -y pgbouncer)")
	}
	port, err := localpg.FreePort(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // pgbouncer runs as postgres and must enter it
		return nil, err
	}
	ini := filepath.Join(dir, "pgbouncer.ini")
	files := map[string]string{
		ini:                                fmt.Sprintf(pgbouncerIni, dbName, pgPort, port, dir),
		filepath.Join(dir, "userlist.txt"): `"postgres" ""` + "\n",
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil { //nolint:gosec // read by pgbouncer as postgres; no secret in it
			return nil, err
		}
	}
	b := &pgbouncer{port: port, log: filepath.Join(dir, "pgbouncer.log"), done: make(chan struct{})}
	b.cmd = exec.Command(bin, ini) //nolint:gosec,noctx // Debian's pgbouncer with the harness's ini; stopped by stop()
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, err
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		b.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			return nil, err
		}
	}
	out, err := os.Create(filepath.Join(dir, "stderr.log")) //nolint:gosec // the harness's own folder
	if err != nil {
		return nil, err
	}
	b.cmd.Stdout, b.cmd.Stderr = out, out
	if err := b.cmd.Start(); err != nil {
		_ = out.Close() // the start's error is the one to report
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	go func() {
		_ = b.cmd.Wait()
		_ = out.Close() // read back from its path
		close(b.done)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr); err == nil {
			_ = c.Close() // it listens: that was the question
			return b, nil
		}
		select {
		case <-b.done:
			return nil, fmt.Errorf("pgbouncer exited: %s", lastLine(readFile(filepath.Join(dir, "stderr.log"))))
		default:
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 100*time.Millisecond) {
			b.stop()
			return nil, errors.New("pgbouncer did not listen within 10 s")
		}
	}
}

// url is dbURL pointed at pgbouncer.
func (b *pgbouncer) url(dbURL string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", err
	}
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port))
	return u.String(), nil
}

func (b *pgbouncer) stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM) // already gone: nothing to stop
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill() // did not stop: it must
		<-b.done
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path) //nolint:gosec // the harness's own files
	return string(b)
}

// pgbouncerReplicas runs two replicas whose queries go through pgbouncer
// in transaction mode and whose leader lock, LISTEN and updater use a
// direct connection (POINTSD_DIRECT_URL): both must become ready, exactly
// one lead, cycles advance, and GET / answer on both.
func pgbouncerReplicas(ctx context.Context, x *sc) error {
	u, err := url.Parse(x.e.pg.url)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(u.Port())
	b, err := startPgbouncer(ctx, filepath.Join(x.e.cfg.dir, "pgbouncer"), port)
	if err != nil {
		return err
	}
	defer func() {
		x.e.stopAll(ctx) // the replicas first: a pooler gone under them is not this scenario's fault
		b.stop()
	}()
	pooled, err := b.url(x.e.pg.url)
	if err != nil {
		return err
	}
	x.faultBegins(ctx)
	spec := replicaSpec{mode: "rolling", dbURL: pooled, env: []string{"POINTSD_DIRECT_URL=" + x.e.pg.url}}
	x.res.didf("pgbouncer (pool_mode = transaction) in front of PostgreSQL; 2 replicas, rolling, DATABASE_URL at pgbouncer, POINTSD_DIRECT_URL at PostgreSQL")
	for range 2 {
		r, err := x.e.startReplicaSpec(ctx, spec)
		if r != nil {
			x.replicas = append(x.replicas, r)
		}
		if err != nil {
			return err
		}
	}
	ready := 0
	for _, r := range x.replicas {
		if err := r.waitHTTP(ctx, "/readyz", 15*time.Second); err != nil {
			x.res.add(check{"ready " + r.name, false, err.Error()})
		} else {
			ready++
			x.res.add(check{"ready " + r.name, true, "/readyz 200 through pgbouncer"})
		}
	}
	x.prober = startProber(ctx, x.replicas...)
	leader, at, err := leaderOf(ctx, x.replicas, 3*x.period)
	x.faultEnds()
	firstDue := time.Time{}
	if err != nil {
		x.res.add(check{"leader", false, fmt.Sprintf("no replica led within %s", 3*x.period)})
	} else {
		leaders := 0
		for _, r := range x.replicas {
			if st, err := r.status(ctx); err == nil && st.Leader {
				leaders++
			}
		}
		x.res.add(check{"leader", leaders == 1, fmt.Sprintf("%d replica(s) lead; %s led %.1f s after the start", leaders, leader.name, at.Sub(x.res.faultStart).Seconds())})
		firstDue = at.Add(x.period + 2*time.Second)
	}
	x.conclude(ctx, concludeOpts{firstDue: firstDue})
	for _, r := range x.replicas {
		code, body, err := r.get(ctx, "/")
		ok := err == nil && code == 200 && parseAnswer(body) != nil
		x.res.add(check{"GET / " + r.name, ok, fmt.Sprintf("%d %s", code, snippet(body))})
	}
	return nil
}
