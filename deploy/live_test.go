package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/pgtest"
)

// pendingOK lists the alerts that may be pending, never firing, on a
// healthy replica, and why.
var pendingOK = map[string]string{
	// Three 1 s periods leave little room: an idle machine sees at most
	// 1.1 periods since the last cycle, but on a loaded CI machine a cycle
	// can finish seconds late. The alert's minute of for: absorbs that.
	"PointsdUpdaterStalled": "three 1 s periods are little on a loaded machine",
	// pointsd_listener_up is 0 from the start until the listener's first
	// heartbeat is heard, a round trip after it connects: a scrape may
	// catch it. The alert's 5 minutes of for: absorb that.
	"PointsdListenerDown": "0 until the first heartbeat is heard, just after start",
}

// TestDashboardAndAlertsOnALivePrometheus runs pointsd against a real
// database and a real Prometheus loading the repository's rules, then
// checks that every query of the Grafana dashboard returns data and that a
// healthy replica fires no alert.
func TestDashboardAndAlertsOnALivePrometheus(t *testing.T) {
	t.Parallel()
	began := time.Now()
	promtool := need(t, "promtool", "prometheus")
	prometheus := need(t, "prometheus", "prometheus")
	dbURL := pgtest.NewDB(t, pgtest.Options{Partitions: 4, Users: 1000})
	dir := t.TempDir()
	bin := buildPointsd(t, dir)
	t.Logf("built pointsd in %v", time.Since(began).Round(time.Millisecond))

	c := &http.Client{Timeout: 5 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(c.CloseIdleConnections)
	addr := startPointsd(t, bin, dbURL, "-period", "1s")
	base := "http://" + addr

	// A healthy replica: ready, leading, a cycle finished.
	if err := poll(15*time.Second, func() error {
		var st struct {
			Leader     bool
			FinishedAt *time.Time `json:"cycle_finished_at"`
		}
		if err := getJSON(t.Context(), c, base+"/readyz", &struct{}{}); err != nil {
			return err
		}
		if err := getJSON(t.Context(), c, base+"/status", &st); err != nil {
			return err
		}
		if !st.Leader || st.FinishedAt == nil {
			return fmt.Errorf("/status: leader %v, a cycle finished at %v", st.Leader, st.FinishedAt)
		}
		return nil
	}); err != nil {
		t.Fatal("pointsd is not a healthy leader: ", err)
	}
	stopTraffic := traffic(t.Context(), c, base)
	defer func() {
		if failed := stopTraffic(); failed != "" {
			t.Errorf("a healthy replica failed requests: %s", failed)
		}
	}()

	prom := startPrometheus(t, c, prometheus, dir, addr)
	queries, err := dashboardQueries("grafana/dashboards/pointsd.json", map[string]string{
		// Grafana's: $__rate_interval is at least four scrape intervals.
		"__rate_interval": "10s", "__interval": "5s", "__range": "1m", "__range_s": "60",
		// The dashboard's variables, as "All" would select them: Grafana
		// escapes regular expressions for PromQL's strings.
		"job": "pointsd", "instance": strings.ReplaceAll(regexp.QuoteMeta(addr), `\`, `\\`),
	})
	if err != nil {
		t.Error(err)
	}
	if len(queries) < 20 {
		t.Errorf("%d dashboard queries, want every panel's", len(queries))
	}

	// Wait until Prometheus has scraped and evaluated enough for every
	// query to answer. A query it refuses fails at once, and is not asked
	// again.
	refused := map[string]bool{}
	var missing []string
	const patience = 20 * time.Second
	_ = poll(patience, func() error {
		missing = missing[:0]
		for _, q := range queries {
			if refused[q.where] {
				continue
			}
			ss, err := prom.query(t.Context(), q.expr)
			if errors.As(err, new(badQuery)) {
				t.Errorf("%s: Prometheus refuses %s: %v", q.where, q.expr, err)
				refused[q.where] = true
				continue
			}
			if err == nil {
				err = hasData(ss)
			}
			if err == nil && q.label != "" && !slices.ContainsFunc(ss, func(s sample) bool { return s.metric[q.label] != "" }) {
				err = fmt.Errorf("no series with the label %s", q.label)
			}
			if err != nil {
				missing = append(missing, fmt.Sprintf("%s: %v\n\t%s", q.where, err, q.expr))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d queries without data", len(missing))
		}
		return nil
	})
	for _, m := range missing {
		t.Errorf("dashboard query without data after %v: %s", patience, m)
	}
	dataAt := time.Now()
	// Now that every series has appeared (labelled ones appear with their
	// first observation), lint what pointsd exposes.
	t.Run("promtool check metrics", func(t *testing.T) { checkMetrics(t, c, promtool, base+"/metrics") })
	t.Logf("dashboard queries answered %v after the start", dataAt.Sub(began).Round(time.Millisecond))

	checkRulesAndAlerts(t, prom, dataAt)
	t.Logf("done in %v", time.Since(began).Round(time.Millisecond))
}

// checkRulesAndAlerts waits for every rule group to be evaluated after
// dataAt, checks that every rule of rules.yml is loaded and evaluates
// without error, and that no alert fires.
func checkRulesAndAlerts(t *testing.T, prom *promServer, dataAt time.Time) {
	t.Helper()
	var want ruleFile
	readYAML(t, "prometheus/rules.yml", &want)
	var wantNames []string
	for _, g := range want.Groups {
		for _, r := range g.Rules {
			wantNames = append(wantNames, r.Alert+r.Record)
		}
	}
	var rg ruleGroups
	err := poll(10*time.Second, func() error {
		var err error
		if rg, err = prom.rules(t.Context()); err != nil {
			return err
		}
		for _, g := range rg.Groups {
			if !g.LastEvaluation.After(dataAt) {
				return fmt.Errorf("group %s last evaluated at %v", g.Name, g.LastEvaluation)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal("rules not evaluated: ", err)
	}
	var loaded []string
	for _, g := range rg.Groups {
		for _, r := range g.Rules {
			loaded = append(loaded, r.Name)
			if r.Health != "ok" {
				t.Errorf("rule %s: health %s: %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	slices.Sort(loaded)
	slices.Sort(wantNames)
	if !slices.Equal(loaded, wantNames) {
		t.Errorf("Prometheus loaded the rules %v, want rules.yml's %v", loaded, wantNames)
	}

	alerts, err := prom.alerts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		name := a.Labels["alertname"]
		if why, ok := pendingOK[name]; ok && a.State == "pending" {
			t.Logf("%s is pending (%s): value %s", name, why, a.Value)
			continue
		}
		t.Errorf("a healthy replica has alert %s %s: %v, value %s", name, a.State, a.Labels, a.Value)
	}
}

// traffic sends GET / (and now and then /status and an unknown path)
// until the returned function is called, which reports failed requests.
func traffic(ctx context.Context, c *http.Client, base string) (stop func() string) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	failures := map[string]int{}
	var n atomic.Int64
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			i := n.Add(1)
			path, want := "/", http.StatusOK
			switch {
			case i%20 == 0:
				path = "/status"
			case i%50 == 1:
				path, want = "/no-such-page", http.StatusNotFound
			}
			resp, err := get(ctx, c, base+path)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close() // drained; only the status matters
				if resp.StatusCode != want {
					err = errors.New(resp.Status)
				}
			}
			if err != nil {
				mu.Lock()
				failures[fmt.Sprintf("GET %s: %v", path, err)]++
				mu.Unlock()
			}
		}
	})
	return func() string {
		close(done)
		wg.Wait()
		var out []string
		for f, k := range failures {
			out = append(out, fmt.Sprintf("%s (%d of %d requests)", f, k, n.Load()))
		}
		slices.Sort(out)
		return strings.Join(out, "; ")
	}
}

// checkMetrics lints a live /metrics with promtool check metrics.
func checkMetrics(t *testing.T, c *http.Client, promtool, url string) {
	resp, err := get(t.Context(), c, url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close() // read-only: nothing to lose
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %v %v", resp.Status, err)
	}
	cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(body))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics on a live /metrics: %v\n%s", err, out)
	}
}
