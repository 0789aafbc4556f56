package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is a child process of the test, whose output is kept for the
// failure message; it is stopped (SIGTERM, then SIGKILL after 10 s) when
// the test ends.
type process struct {
	name string
	log  *lineLog
}

// start runs name with args and env (added to this environment, less any
// POINTSD_* setting that would change pointsd's flags).
func start(t *testing.T, name string, env []string, onLine func(string), args ...string) *process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, name, args...) //nolint:gosec // test: runs the tool it was given (a binary it built or found on PATH)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "POINTSD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	p := &process{name: filepath.Base(name), log: &lineLog{onLine: onLine}}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
		if t.Failed() {
			t.Logf("%s's output:\n%s", p.name, p.log.tail(60))
		}
	})
	return p
}

// lineLog keeps a process's output and hands each line to onLine.
type lineLog struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	lines  []string
	onLine func(string)
}

func (l *lineLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(b)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line) // an incomplete line: wait for the rest
			break
		}
		line = strings.TrimRight(line, "\n")
		l.lines = append(l.lines, line)
		if l.onLine != nil {
			l.onLine(line)
		}
	}
	return len(b), nil
}

func (l *lineLog) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[max(0, len(l.lines)-n):], "\n")
}

// buildPointsd builds ./cmd/pointsd into dir.
func buildPointsd(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("go is not on PATH: ", err)
	}
	bin := filepath.Join(dir, "pointsd")
	out, err := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, "../cmd/pointsd").CombinedOutput() //nolint:gosec // test: the go toolchain found on PATH
	if err != nil {
		t.Fatalf("go build ./cmd/pointsd: %v\n%s", err, out)
	}
	return bin
}

// startPointsd starts pointsd serve on a free loopback port and returns
// its address once it listens.
func startPointsd(t *testing.T, bin, dbURL string, args ...string) string {
	t.Helper()
	addrs := make(chan string, 1)
	onLine := func(line string) {
		// The JSON log's {"msg":"serving","addr":"127.0.0.1:40123"}.
		var l struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" && l.Addr != "" {
			select {
			case addrs <- l.Addr:
			default:
			}
		}
	}
	start(t, bin, []string{"DATABASE_URL=" + dbURL}, onLine,
		append([]string{"serve", "-addr", "127.0.0.1:0"}, args...)...)
	select {
	case addr := <-addrs:
		return addr
	case <-time.After(15 * time.Second):
		t.Fatal("pointsd serve did not log its address within 15 s")
		return ""
	}
}

// freePort returns a loopback port free a moment ago, for a child that
// cannot report the port it took.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }() // only held to learn a free port
	return ln.Addr().(*net.TCPAddr).Port
}

// get GETs url with c.
func get(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

// getOK GETs url and says why the answer is not a 200.
func getOK(ctx context.Context, c *http.Client, url string) error {
	resp, err := get(ctx, c, url)
	if err != nil {
		return err
	}
	_ = resp.Body.Close() // only the status matters
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// getJSON GETs url and decodes a 200 JSON answer into v.
func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	resp, err := get(ctx, c, url)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }() // read-only: nothing to lose
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(b.String()))
	}
	return json.NewDecoder(bufio.NewReader(resp.Body)).Decode(v)
}
