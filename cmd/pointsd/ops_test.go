package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/pgtest"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"-version"}} {
		code, out, _ := runPointsd(t, context.Background(), nil, args...)
		if code != 0 || !strings.HasPrefix(out, "pointsd ") || !strings.Contains(out, runtime.Version()) {
			t.Errorf("pointsd %v: exit %d, %q; want the version, commit and Go version", args, code, out)
		}
	}
}

// On SIGTERM, /readyz turns 503 while requests are still served for the
// shutdown delay; then the server drains and exits 0. pprof is served on
// -debug-addr only, and the log is JSON at the level asked, durations as
// strings, never the password.
func TestServeShutdownDebugAndLogs(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Users: 100})
	addr, debug := freeAddr(t), freeAddr(t)
	env := map[string]string{"DATABASE_URL": url, "POINTSD_LOG_LEVEL": "debug"}
	ctx, cancel := context.WithCancel(context.Background())
	var logs pgtest.SyncBuffer
	done := make(chan int)
	go func() {
		err := run(ctx, []string{"serve", "-addr", addr, "-debug-addr", debug, "-shutdown-delay", "1s"},
			func(k string) string { return env[k] }, &bytes.Buffer{}, &logs)
		done <- exitCode(err, &logs)
	}()
	waitStatus(t, "http://"+addr+"/readyz", http.StatusOK)
	waitStatus(t, "http://"+debug+"/debug/pprof/", http.StatusOK)
	if code := status(t, http.MethodGet, "http://"+addr+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof on the main listener: %d, want 404", code)
	}
	if code := status(t, http.MethodHead, "http://"+addr+"/"); code != http.StatusOK {
		t.Errorf("HEAD /: %d, want 200", code)
	}

	cancel()
	waitStatus(t, "http://"+addr+"/readyz", http.StatusServiceUnavailable)
	if code := status(t, http.MethodGet, "http://"+addr+"/"); code != http.StatusOK {
		t.Errorf("GET / during the shutdown delay: %d, want 200", code)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d", code)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("serve did not exit within 8s of SIGTERM")
	}

	var sawRequest, sawDuration bool
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		sawRequest = sawRequest || l["msg"] == "request"
		if d, ok := l["period"]; ok {
			sawDuration = d == "1m0s"
		}
	}
	if !sawRequest || !sawDuration {
		t.Errorf("debug request lines: %v, period as a duration string: %v; log:\n%s", sawRequest, sawDuration, logs.String())
	}
	if strings.Contains(logs.String(), "password") {
		t.Error("the log mentions a password")
	}
}

// status makes one request on a connection of its own and returns the
// status code.
func status(t *testing.T, method, url string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

func TestBadLogLevelExits2(t *testing.T) {
	t.Parallel()
	code, _, stderr := runPointsd(t, context.Background(), nil, "serve", "-log-level", "loud")
	if code != 2 || !strings.Contains(stderr, "flag -log-level: must be debug, info, warn or error") {
		t.Errorf("exit %d, %q", code, stderr)
	}
}
