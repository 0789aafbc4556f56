package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pointsd/pointsd/internal/localpg"
)

// replica is a pointsd serve the harness started, its stderr in a log file.
type replica struct {
	name, addr, mode string
	logPath          string
	cmd              *exec.Cmd
	started          time.Time

	done     chan struct{} // closed when the process has exited
	exitCode int
	exitedAt time.Time
}

// statusHTTP is the client for the harness's own calls to the replicas
// (status, readiness, metrics), apart from the clients under test.
var statusHTTP = &http.Client{Timeout: 3 * time.Second}

// replicaSpec says how to start a replica beyond its mode and database:
// where it listens, what it runs under (ip netns exec …), extra settings.
type replicaSpec struct {
	mode  string
	dbURL string
	host  string   // the address it listens on; 127.0.0.1 when empty
	wrap  []string // a command the replica runs under, e.g. ip netns exec NS
	env   []string // extra KEY=value settings (POINTSD_DIRECT_URL=…)
}

// startReplica starts `pointsd serve` in mode on a free loopback port
// against dbURL and waits until it answers /healthz.
func (e *env) startReplica(ctx context.Context, mode, dbURL string) (*replica, error) {
	return e.startReplicaSpec(ctx, replicaSpec{mode: mode, dbURL: dbURL})
}

// startReplicaSpec starts a replica as spec says. The replica runs in its
// own process group (a Ctrl-C reaches the harness only, which kills it) and
// dies with the harness's thread should the harness be killed.
func (e *env) startReplicaSpec(ctx context.Context, spec replicaSpec) (*replica, error) {
	port, err := localpg.FreePort(ctx)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.seq++
	name := fmt.Sprintf("r%d", e.seq)
	e.mu.Unlock()
	host := cmp.Or(spec.host, "127.0.0.1")
	r := &replica{name: name, mode: spec.mode, addr: net.JoinHostPort(host, strconv.Itoa(port)),
		logPath: filepath.Join(e.logDir, e.current+"-"+name+".log"), done: make(chan struct{})}
	f, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	argv := append(slices.Clone(spec.wrap), e.cfg.pointsd, "serve", "-addr", r.addr, "-period", e.cfg.period.String(), "-mode", spec.mode)
	r.cmd = exec.Command(argv[0], argv[1:]...) //nolint:gosec,noctx // our own pointsd build (under ip netns exec at most); outlives ctx: the harness stops it (stopAll, killAll)
	r.cmd.Env = append(childEnv(spec.dbURL), spec.env...)
	r.cmd.Stdout, r.cmd.Stderr = f, f
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		_ = f.Close() // the start's error is the one to report
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	r.started = time.Now()
	e.mu.Lock()
	e.replicas = append(e.replicas, r)
	e.mu.Unlock()
	go func() {
		_ = r.cmd.Wait()
		_ = f.Close() // the log is read back from its path; nothing to do on error
		r.exitCode = r.cmd.ProcessState.ExitCode()
		r.exitedAt = time.Now()
		close(r.done)
	}()
	if err := r.waitHTTP(ctx, "/healthz", 30*time.Second); err != nil {
		return r, err
	}
	return r, nil
}

func (r *replica) url(path string) string { return "http://" + r.addr + path }

func (r *replica) alive() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// waitHTTP waits until path answers 200, the process exits, or d passes.
func (r *replica) waitHTTP(ctx context.Context, path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if code, _, err := r.get(ctx, path); err == nil && code == http.StatusOK {
			return nil
		}
		if !r.alive() {
			return fmt.Errorf("%s exited (status %d) before %s answered 200: %s", r.name, r.exitCode, path, r.lastLog())
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 50*time.Millisecond) {
			return fmt.Errorf("%s: %s did not answer 200 within %s: %s", r.name, path, d, r.lastLog())
		}
	}
}

// get fetches path and returns the status and body.
func (r *replica) get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url(path), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := statusHTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read-only: nothing to lose
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, body, err
}

// replicaStatus is the part of GET /status the harness reads.
type replicaStatus struct {
	Leader bool   `json:"leader"`
	Cycle  int64  `json:"cycle"`
	Mode   string `json:"mode"`
}

func (r *replica) status(ctx context.Context) (replicaStatus, error) {
	var st replicaStatus
	code, body, err := r.get(ctx, "/status")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("/status: %d %s", code, strings.TrimSpace(string(body)))
	}
	return st, json.Unmarshal(body, &st)
}

// signal sends sig to the process (a no-op once it has exited).
func (r *replica) signal(sig syscall.Signal) {
	if r.alive() {
		_ = r.cmd.Process.Signal(sig)
	}
}

// waitExit waits up to d for the process to exit.
func (r *replica) waitExit(d time.Duration) bool {
	select {
	case <-r.done:
		return true
	case <-time.After(d):
		return false
	}
}

// memory returns the resident set now and its high-water mark, in bytes.
func (r *replica) memory() (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// metricsSize is the size of GET /metrics in bytes, and the body.
func (r *replica) metrics(ctx context.Context) (int, string, error) {
	code, body, err := r.get(ctx, "/metrics")
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("/metrics: status %d", code)
	}
	return len(body), string(body), err
}

// lastLog is the last line the replica logged, for error messages.
func (r *replica) lastLog() string {
	b, _ := os.ReadFile(r.logPath)
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(nothing logged)"
	}
	return lastLine(s)
}

// stopAll stops every replica: SIGTERM, then SIGKILL after 6 s.
func (e *env) stopAll(ctx context.Context) {
	e.mu.Lock()
	rs := e.replicas
	e.replicas = nil
	e.mu.Unlock()
	for _, r := range rs {
		r.signal(syscall.SIGTERM)
	}
	for _, r := range rs {
		if !r.waitExit(6 * time.Second) {
			r.signal(syscall.SIGKILL)
			r.waitExit(5 * time.Second)
		}
	}
}

// killAll kills every replica at once (on exit).
func (e *env) killAll() {
	e.mu.Lock()
	rs := e.replicas
	e.replicas = nil
	e.mu.Unlock()
	for _, r := range rs {
		r.signal(syscall.SIGKILL)
	}
	for _, r := range rs {
		r.waitExit(5 * time.Second)
	}
}

// leaderOf polls the replicas' /status until one says it leads, for at most
// d, and returns it and when it was seen.
func leaderOf(ctx context.Context, rs []*replica, d time.Duration) (*replica, time.Time, error) {
	deadline := time.Now().Add(d)
	for {
		for _, r := range rs {
			if !r.alive() {
				continue
			}
			if st, err := r.status(ctx); err == nil && st.Leader {
				return r, time.Now(), nil
			}
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 100*time.Millisecond) {
			return nil, time.Time{}, fmt.Errorf("no replica led within %s", d)
		}
	}
}
