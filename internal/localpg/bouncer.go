package localpg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// ErrNoBouncer is returned by StartBouncer when pgbouncer is not installed.
var ErrNoBouncer = errors.New("pgbouncer is not installed (apt-get install pgbouncer)")

// Bouncer is a PgBouncer in transaction pooling mode in front of a local
// server, for tests of pointsd behind a pooler.
type Bouncer struct {
	Port int
	cmd  *exec.Cmd
	done chan error
}

// StartBouncer starts pgbouncer (as the postgres user when root: it
// refuses to run as root) in dir, in front of the server on upstreamPort,
// trusting the user postgres. Stop it with Stop.
func StartBouncer(ctx context.Context, dir string, upstreamPort int) (*Bouncer, error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/pgbouncer"); err != nil {
			return nil, ErrNoBouncer
		}
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // o+x: pgbouncer runs as the postgres user
		return nil, err
	}
	port, err := FreePort(ctx)
	if err != nil {
		return nil, err
	}
	ini := fmt.Sprintf(`[databases]
* = host=127.0.0.1 port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
server_lifetime = 3600
ignore_startup_parameters = extra_float_digits
logfile = %s
`, upstreamPort, port, filepath.Join(dir, "users.txt"), filepath.Join(dir, "pgbouncer.log"))
	files := map[string]string{"pgbouncer.ini": ini, "users.txt": `"postgres" ""` + "\n"}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil { //nolint:gosec // read by the postgres user
			return nil, err
		}
	}
	if cred != nil {
		for _, p := range []string{dir, filepath.Join(dir, "pgbouncer.ini"), filepath.Join(dir, "users.txt")} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
	}
	// Not CommandContext: it outlives ctx, until Stop.
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini")) //nolint:gosec,noctx // the installed pgbouncer
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	b := &Bouncer{Port: port, cmd: cmd, done: make(chan error, 1)}
	go func() { b.done <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			_ = c.Close()
			return b, nil
		}
		select {
		case err := <-b.done:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log")) //nolint:gosec // its own log, in its own folder
			return nil, fmt.Errorf("pgbouncer exited: %w: %s", err, lastLine(string(log)))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = b.Stop()
			return nil, errors.New("pgbouncer did not listen within 10 s")
		}
	}
}

// Stop stops pgbouncer and waits for it, at most 5 s.
func (b *Bouncer) Stop() error {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-b.done:
		return exitedBySignal(err)
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		return exitedBySignal(<-b.done)
	}
}

// exitedBySignal is err, unless it says the process ended on a signal
// (which Stop sent).
func exitedBySignal(err error) error {
	var exit *exec.ExitError
	if errors.As(err, &exit) && !exit.Exited() {
		return nil
	}
	return err
}
