// Package localpg starts a throwaway or project-local PostgreSQL server from
// the installed server binaries (initdb, pg_ctl), falling back to a Docker
// container when the binaries are missing and a Docker engine answers.
//
// It exists for the dev runner (make run), the benchmarks and the tests; the
// service itself never starts a database. Servers listen on 127.0.0.1 only and
// trust local connections: they are for one developer's machine.
package localpg

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoPostgres is returned when neither the PostgreSQL server binaries nor a
// Docker engine are available. Its text says what to install.
var ErrNoPostgres = errors.New("no PostgreSQL available: install the server binaries " +
	"(Debian: apt-get install -y postgresql) or start a Docker engine, or set DATABASE_URL")

// Config says where and how to run the server.
type Config struct {
	// Dir holds the cluster. An existing cluster is reused, a running one is
	// joined rather than restarted.
	Dir string
	// Settings are extra server settings (name → value), e.g. fsync=off for
	// tests.
	Settings map[string]string
	// Log receives initdb's and pg_ctl's output. Nil discards it.
	Log io.Writer
	// Port to listen on; 0 picks a free one.
	Port int
	// Image is the PostgreSQL image a container runs (StartContainer):
	// POINTSD_POSTGRES_IMAGE when empty, else the official postgres:15.
	Image string
}

// Server is a running PostgreSQL server.
type Server struct {
	// URL connects to the postgres database as the postgres superuser.
	URL string
	// Started is false when the server was already running and was reused.
	Started bool

	stop func(ctx context.Context) error
}

// Stop stops the server if this process started it; a reused server keeps
// running.
func (s *Server) Stop(ctx context.Context) error {
	if !s.Started || s.stop == nil {
		return nil
	}
	return s.stop(ctx)
}

// Start runs (or reuses) a cluster in cfg.Dir from the local binaries, or a
// Docker container when there are none.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	bin, err := BinDir(ctx)
	if err != nil {
		s, derr := StartContainer(ctx, cfg)
		if derr != nil {
			// Both ways failed: say why the second did too.
			return nil, fmt.Errorf("%w (Docker: %w)", ErrNoPostgres, derr)
		}
		return s, nil
	}
	return startLocal(ctx, bin, cfg)
}

// BinDir finds the folder holding initdb and pg_ctl: PATH first, then
// pg_config --bindir, then Debian's /usr/lib/postgresql/N/bin (the newest).
func BinDir(ctx context.Context) (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	// Debian's packages keep the server binaries off PATH, one folder per
	// major version: take the newest.
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return cmp.Compare(majorOf(b), majorOf(a)) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	return "", ErrNoPostgres
}

func startLocal(ctx context.Context, bin string, cfg Config) (*Server, error) {
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	// Parents stay traversable: the server may run as another user.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil { //nolint:gosec // o+x: the server may run as the postgres user, who must traverse
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("give %s to the postgres user: %w", dir, err)
		}
		if p := untraversable(filepath.Dir(dir)); p != "" {
			return nil, fmt.Errorf("the postgres user cannot reach %s through %s: chmod o+x it, or set DATABASE_URL", dir, p)
		}
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...) //nolint:gosec // initdb or pg_ctl from the installed server binaries
		var out bytes.Buffer
		cmd.Stdout = io.MultiWriter(cfg.Log, &out)
		cmd.Stderr = cmd.Stdout
		cmd.Dir = dir
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w: %s", name, err, lastLine(out.String()))
		}
		return nil
	}

	if port, ok := runningPort(ctx, dir); ok {
		// A running server is joined as it is: its settings and port were
		// set when it started, and restarting it would cut off whoever
		// else uses it. Asking for another port is an error, not a
		// surprise.
		if cfg.Port != 0 && cfg.Port != port {
			return nil, fmt.Errorf("a server already runs in %s on port %d, not %d: stop it (pg_ctl stop -D %s) or use its port", dir, port, cfg.Port, dir)
		}
		if len(cfg.Settings) > 0 {
			_, _ = fmt.Fprintf(cfg.Log, "localpg: joining the server already running in %s; its settings stand, not the ones asked for\n", dir)
		}
		return &Server{URL: url(port)}, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		if err := run("initdb", "-D", dir, "-U", "postgres", "--auth=trust",
			"--encoding=UTF8", "--no-sync", "--no-instructions"); err != nil {
			return nil, err
		}
	}
	port := cfg.Port
	if port == 0 {
		if port, err = FreePort(ctx); err != nil {
			return nil, err
		}
	}
	opts := []string{
		"-p " + strconv.Itoa(port),
		"-c listen_addresses=127.0.0.1",
		// No unix socket: its path would depend on the checkout's depth
		// (the limit is 107 bytes) and the default folder may not exist.
		"-c unix_socket_directories=",
	}
	for k, v := range cfg.Settings {
		opts = append(opts, "-c "+k+"="+v)
	}
	if err := run("pg_ctl", "start", "-D", dir, "-w", "-t", "60",
		"-l", filepath.Join(dir, "server.log"), "-o", strings.Join(opts, " ")); err != nil {
		return nil, err
	}
	return &Server{
		URL:     url(port),
		Started: true,
		stop: func(ctx context.Context) error {
			return run("pg_ctl", "stop", "-D", dir, "-w", "-m", "fast")
		},
	}, nil
}

// serverCredential returns the postgres user's identity when running as root
// (initdb and postgres refuse to run as root), nil otherwise.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root needs a postgres user to run the server as")
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("the postgres user's uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("the postgres user's gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// untraversable returns the first folder on the way to dir that other users
// cannot enter, or "".
func untraversable(dir string) string {
	for p := dir; ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
			return p
		}
		if p == filepath.Dir(p) {
			return ""
		}
	}
}

// runningPort reports the port of a server already running in dir, read from
// postmaster.pid (its fourth line), if that server's process is alive.
func runningPort(ctx context.Context, dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid")) //nolint:gosec // the cluster's own pid file
	if err != nil {
		return 0, false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(lines[0]))
	port, err2 := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err1 != nil || err2 != nil || syscall.Kill(pid, 0) != nil {
		return 0, false
	}
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return 0, false
	}
	_ = conn.Close() // it answered: that was the question
	return port, true
}

// FreePort returns a loopback TCP port nobody listens on, just now.
func FreePort(ctx context.Context) (int, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer func() { _ = l.Close() }() // only held to learn a free port
	return l.Addr().(*net.TCPAddr).Port, nil
}

func url(port int) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// majorOf is the major version in a /usr/lib/postgresql/N/bin path.
func majorOf(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}
