package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a server the benchmark started.
type proc struct {
	cmd  *exec.Cmd
	addr string
}

// startServer runs bin with args plus -addr on a free port (for pointsd,
// after "serve") and waits until path answers 200.
func startServer(ctx context.Context, c config, bin string, args []string, path string) (*proc, error) {
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, append(args, "-addr", addr)...) //nolint:gosec // bin is our own build of pointsd or staticserve
	cmd.Env = append(os.Environ(), "DATABASE_URL="+c.dbURL)
	var stderr bytes.Buffer // kept to say why a server did not start
	cmd.Stderr = &tail{&stderr}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, addr: addr}
	deadline := time.Now().Add(30 * time.Second)
	var last string // the last answer, to say why it is not ready
	for {
		resp, err := httpGet(ctx, p.url(path))
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			_ = resp.Body.Close() // read-only: nothing to lose
			if resp.StatusCode == 200 {
				return p, nil
			}
			last = resp.Status + " " + string(b)
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not answer %s within 30s (last: %s); the end of its log (of its first 64 KiB):\n%s", bin, path, last, lastLines(stderr.String(), 5))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) url(path string) string { return "http://" + p.addr + path }

// httpGet GETs url with the default client.
func httpGet(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return http.DefaultClient.Do(req)
}

// counter reads a counter without labels from the server's /metrics.
func (p *proc) counter(ctx context.Context, name string) (float64, error) {
	resp, err := httpGet(ctx, p.url("/metrics"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }() // read-only: nothing to lose
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return counterIn(string(b), name)
}

// counterIn finds counter name's value in a Prometheus text exposition.
func counterIn(metrics, name string) (float64, error) {
	for line := range strings.Lines(metrics) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}

// stop sends SIGTERM and waits.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	_ = p.cmd.Wait()
}

// peakRSS is the process's high-water resident memory, from /proc.
func (p *proc) peakRSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
}

// tail keeps what a server writes to its log, up to 64 KiB: beyond that
// only the start survives, enough to tell why it did not come up.
type tail struct{ b *bytes.Buffer }

func (t *tail) Write(p []byte) (int, error) {
	if t.b.Len() < 64<<10 {
		t.b.Write(p)
	}
	return len(p), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
