package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ory/dockertest/v3/docker"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The stack test brings up the repository's compose.yaml (every service
// but Grafana) on a container engine and checks it as an operator would.
// make stack-test runs it; see the Makefile for the engine and the images.
const (
	stackProject = "pointsd-stack-test"
	stackPeriod  = 10 * time.Second // POINTSD_PERIOD for the replicas
)

var stackServices = []string{"postgres", "migrate", "seed", "pointsd-1", "pointsd-2", "prometheus"}

// replicaStatus is the part of /status the stack test reads.
type replicaStatus struct {
	Mode      string    `json:"mode"`
	Leader    bool      `json:"leader"`
	Cycle     int64     `json:"cycle"`
	CycleMode string    `json:"cycle_mode"`
	Started   time.Time `json:"cycle_started_at"`
	Finished  time.Time `json:"cycle_finished_at"`
}

// stack drives docker-compose on the test's project.
type stack struct {
	t      *testing.T
	dc     string
	engine *docker.Client
	http   *http.Client
}

// compose runs docker-compose on the project and returns its output; a
// failure fails the test unless the caller asked for the error.
func (s *stack) compose(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	all := append([]string{"-p", stackProject, "-f", "../compose.yaml"}, args...)
	cmd := exec.CommandContext(ctx, s.dc, all...) //nolint:gosec // test: runs docker-compose found on PATH
	cmd.Env = append(os.Environ(), "POINTSD_PERIOD="+stackPeriod.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("docker-compose %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

func (s *stack) must(ctx context.Context, args ...string) string {
	s.t.Helper()
	out, err := s.compose(ctx, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *stack) status(ctx context.Context, port int) (replicaStatus, error) {
	var st replicaStatus
	err := getJSON(ctx, s.http, fmt.Sprintf("http://127.0.0.1:%d/status", port), &st)
	return st, err
}

// serviceContainers lists the project's containers of one service, stopped
// ones too.
func (s *stack) serviceContainers(service string) ([]docker.APIContainers, error) {
	return s.engine.ListContainers(docker.ListContainersOptions{All: true, Filters: map[string][]string{
		"label": {"com.docker.compose.project=" + stackProject, "com.docker.compose.service=" + service},
	}})
}

func TestStack(t *testing.T) {
	if os.Getenv("POINTSD_STACK") != "1" {
		t.Skip("make stack-test runs it: it builds the images and brings compose.yaml up")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	engine, err := docker.NewClientFromEnv()
	if err == nil {
		err = engine.PingWithContext(ctx)
	}
	if err != nil {
		t.Fatalf("no Docker API (DOCKER_HOST=%q): %v", os.Getenv("DOCKER_HOST"), err)
	}
	s := &stack{t: t, dc: need(t, "docker-compose", "docker-compose"), engine: engine,
		http: &http.Client{Timeout: 5 * time.Second}}
	for _, port := range []int{4000, 4001, 9090} {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("the stack publishes 127.0.0.1:%d, which is taken: %v", port, err)
		}
		_ = ln.Close() // only a check that the port is free
	}
	// What a killed run left behind.
	s.must(ctx, "down", "-v", "--remove-orphans")
	downed := false
	t.Cleanup(func() {
		if !downed {
			if _, err := s.compose(context.Background(), "down", "-v", "--remove-orphans"); err != nil {
				t.Log(err)
			}
		}
	})

	figures := []string{}
	figure := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		figures = append(figures, line)
		t.Log(line)
	}

	// The image.
	began := time.Now()
	s.must(ctx, "build", "pointsd-1")
	img, err := engine.InspectImage("pointsd:local")
	if err != nil {
		t.Fatal("the built image: ", err)
	}
	figure("image pointsd:local built in %s: %.1f MB, user %s", time.Since(began).Round(time.Second),
		float64(img.Size)/1e6, img.Config.User)
	if u := img.Config.User; u == "" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root") {
		t.Errorf("the image runs as %q, want a non-root user", u)
	}
	version := s.must(ctx, "run", "--rm", "--no-deps", "-T", "pointsd-1", "version")
	if rev := os.Getenv("POINTSD_REVISION"); rev != "" && !strings.Contains(version, rev) {
		t.Errorf("pointsd version in the image: %q, want the commit %s", version, rev)
	}
	figure("pointsd version in the image: %s", lastLine(version))

	// Up, and the first answers.
	began = time.Now()
	s.must(ctx, append([]string{"up", "-d"}, stackServices...)...)
	for _, port := range []int{4000, 4001} {
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		if err := poll(3*time.Minute, func() error { return getOK(ctx, s.http, url) }); err != nil {
			logs, _ := s.compose(ctx, "logs", "--tail", "20")
			t.Fatalf("GET %s: %v\n%s", url, err, logs)
		}
		figure("GET %s: first 200 %.1f s after up", url, time.Since(began).Seconds())
	}

	// migrate then seed ran once each and exited 0.
	for _, svc := range []string{"migrate", "seed"} {
		cs, err := s.serviceContainers(svc)
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) != 1 {
			t.Fatalf("%s: %d containers, want 1", svc, len(cs))
		}
		c, err := engine.InspectContainerWithContext(cs[0].ID, ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.State.Running || c.State.ExitCode != 0 || c.RestartCount != 0 {
			t.Errorf("%s: running %v, exit code %d, restarts %d; want one run that exited 0",
				svc, c.State.Running, c.State.ExitCode, c.RestartCount)
		}
	}
	seedLog := s.must(ctx, "logs", "--no-color", "seed")
	figure("seed: %s", lastLine(seedLog))

	// Exactly one replica leads, and cycles advance.
	ports := map[string]int{"pointsd-1": 4000, "pointsd-2": 4001}
	leaderOf := func() (string, map[string]replicaStatus, error) {
		sts := map[string]replicaStatus{}
		var leaders []string
		for svc, port := range ports {
			st, err := s.status(ctx, port)
			if err != nil {
				return "", nil, err
			}
			sts[svc] = st
			if st.Leader {
				leaders = append(leaders, svc)
			}
		}
		if len(leaders) != 1 {
			return "", sts, fmt.Errorf("leaders %v, want exactly one", leaders)
		}
		return leaders[0], sts, nil
	}
	var leader string
	var sts map[string]replicaStatus
	if err := poll(30*time.Second, func() (err error) { leader, sts, err = leaderOf(); return err }); err != nil {
		t.Fatal(err)
	}
	first := sts[leader].Cycle
	if err := poll(3*stackPeriod, func() (err error) {
		if leader, sts, err = leaderOf(); err == nil && sts[leader].Cycle < first+1 {
			err = fmt.Errorf("cycle %d, want past %d", sts[leader].Cycle, first)
		}
		return err
	}); err != nil {
		t.Fatal("cycles do not advance: ", err)
	}
	figure("%s leads; cycle %d -> %d (period %s)", leader, first, sts[leader].Cycle, stackPeriod)

	checkStackPrometheus(ctx, t, s, figure)

	// The mode switch reaches the whole cluster, and the next cycle.
	began = time.Now()
	out := s.must(ctx, "exec", "-T", "pointsd-1", "pointsd", "mode", "strict")
	switched := time.Now() // the switch has committed
	if err := poll(10*time.Second, func() error {
		for svc, port := range ports {
			st, err := s.status(ctx, port)
			if err != nil {
				return err
			}
			if st.Mode != "strict" {
				return fmt.Errorf("%s: mode %q", svc, st.Mode)
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("after %q: %v", strings.TrimSpace(out), err)
	}
	figure("pointsd mode strict: both replicas' /status say strict %.1f s later", time.Since(began).Seconds())
	// The first cycle to start after the switch runs strict (one in
	// flight keeps its mode).
	var next replicaStatus
	if err := poll(3*stackPeriod, func() (err error) {
		next, err = s.status(ctx, ports[leader])
		if err == nil && !next.Started.After(switched) {
			err = fmt.Errorf("cycle %d started at %s, before the switch", next.Cycle, next.Started)
		}
		return err
	}); err != nil {
		t.Fatal("no cycle after the switch: ", err)
	}
	if next.CycleMode != "strict" {
		t.Errorf("cycle %d, the first after the switch, runs %s", next.Cycle, next.CycleMode)
	}
	figure("cycle %d runs strict, %.1f s after pointsd mode strict", next.Cycle, time.Since(began).Seconds())

	// Stopping the leader's container: the other leads within 10 s and no
	// boundary passes without a cycle.
	other := "pointsd-1"
	if leader == other {
		other = "pointsd-2"
	}
	before, err := s.status(ctx, ports[other])
	if err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	s.must(ctx, "stop", leader)
	stopped := time.Since(began)
	if err := poll(30*time.Second, func() error {
		st, err := s.status(ctx, ports[other])
		if err == nil && !st.Leader {
			err = errors.New("still a follower")
		}
		return err
	}); err != nil {
		t.Fatalf("%s after %s stopped: %v", other, leader, err)
	}
	failover := time.Since(began)
	figure("docker-compose stop %s took %.1f s; %s led %.1f s after the stop began", leader,
		stopped.Seconds(), other, failover.Seconds())
	if failover > 10*time.Second {
		t.Errorf("failover took %s, want at most 10 s", failover.Round(100*time.Millisecond))
	}
	var after replicaStatus
	if err := poll(4*stackPeriod, func() (err error) {
		after, err = s.status(ctx, ports[other])
		if err == nil && after.Cycle < before.Cycle+2 {
			err = fmt.Errorf("cycle %d, want %d", after.Cycle, before.Cycle+2)
		}
		return err
	}); err != nil {
		t.Fatal("cycles after the failover: ", err)
	}
	// Cycles start on the period's boundaries: as many periods passed as
	// cycles ran.
	periods := after.Started.Sub(before.Started).Seconds() / stackPeriod.Seconds()
	if ran := after.Cycle - before.Cycle; float64(ran) < periods-0.5 {
		t.Errorf("cycles %d -> %d started %.1f periods apart: %.0f boundaries passed without a cycle",
			before.Cycle, after.Cycle, periods, periods-float64(ran))
	}
	if skipped := metricValue(ctx, t, s.http, ports[other], "pointsd_cycle_boundaries_skipped_total"); skipped != 0 {
		t.Errorf("%s skipped %v boundaries", other, skipped)
	}
	figure("cycles %d -> %d across the failover, none dropped", before.Cycle, after.Cycle)

	// down -v leaves nothing behind.
	s.must(ctx, "down", "-v", "--remove-orphans")
	downed = true
	label := map[string][]string{"label": {"com.docker.compose.project=" + stackProject}}
	cs, err := engine.ListContainers(docker.ListContainersOptions{All: true, Filters: label, Context: ctx})
	if err != nil || len(cs) != 0 {
		t.Errorf("containers after down -v: %d (%v)", len(cs), err)
	}
	ns, err := engine.FilteredListNetworks(docker.NetworkFilterOpts{
		"label": {"com.docker.compose.project=" + stackProject: true}})
	if err != nil || len(ns) != 0 {
		t.Errorf("networks after down -v: %d (%v)", len(ns), err)
	}
	vs, err := engine.ListVolumes(docker.ListVolumesOptions{Filters: label, Context: ctx})
	if err != nil || len(vs) != 0 {
		t.Errorf("volumes after down -v: %d (%v)", len(vs), err)
	}
	figure("docker-compose down -v: no container, network or volume left")
	fmt.Printf("stack-test figures:\n  %s\n", strings.Join(figures, "\n  "))
}

// checkStackPrometheus checks the stack's Prometheus: both replicas'
// targets up, every rule of rules.yml loaded and evaluated without error,
// no alert firing.
func checkStackPrometheus(ctx context.Context, t *testing.T, s *stack, figure func(string, ...any)) {
	t.Helper()
	p := &promServer{c: s.http, base: "http://127.0.0.1:9090"}
	if err := poll(60*time.Second, func() error {
		var body struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string
					Health    string
					LastError string `json:"lastError"`
				} `json:"activeTargets"`
			}
		}
		if err := getJSON(ctx, s.http, p.base+"/api/v1/targets", &body); err != nil {
			return err
		}
		up := 0
		for _, tg := range body.Data.ActiveTargets {
			if tg.Labels["job"] != "pointsd" {
				continue
			}
			if tg.Health != "up" {
				return fmt.Errorf("%s: %s %s", tg.Labels["instance"], tg.Health, tg.LastError)
			}
			up++
		}
		if up != 2 {
			return fmt.Errorf("%d pointsd targets up, want 2", up)
		}
		return nil
	}); err != nil {
		t.Fatal("Prometheus targets: ", err)
	}
	var want ruleFile
	readYAML(t, "prometheus/rules.yml", &want)
	wantRules := 0
	for _, g := range want.Groups {
		wantRules += len(g.Rules)
	}
	loaded := 0
	if err := poll(60*time.Second, func() error {
		groups, err := p.rules(ctx)
		if err != nil {
			return err
		}
		loaded = 0
		for _, g := range groups.Groups {
			if g.LastEvaluation.IsZero() {
				return fmt.Errorf("group %s not evaluated yet", g.Name)
			}
			for _, r := range g.Rules {
				if r.Health != "ok" {
					return fmt.Errorf("rule %s: %s %s", r.Name, r.Health, r.LastError)
				}
				loaded++
			}
		}
		if loaded != wantRules {
			return fmt.Errorf("%d rules loaded, rules.yml has %d", loaded, wantRules)
		}
		return nil
	}); err != nil {
		t.Fatal("Prometheus rules: ", err)
	}
	alerts, err := p.alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pending []string
	for _, a := range alerts {
		if a.State == "firing" {
			t.Errorf("alert %s is firing on a healthy stack: %v", a.Labels["alertname"], a.Labels)
		} else {
			pending = append(pending, a.Labels["alertname"])
		}
	}
	figure("Prometheus: 2 pointsd targets up, %d rules loaded and evaluated, none firing (pending: %v)",
		loaded, pending)
}

// metricValue reads one unlabelled counter or gauge from a replica's
// /metrics.
func metricValue(ctx context.Context, t *testing.T, c *http.Client, port int, name string) float64 {
	t.Helper()
	resp, err := get(ctx, c, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }() // read-only: nothing to lose
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal("parse /metrics: ", err)
	}
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) != 1 {
		t.Fatalf("/metrics has no single %s", name)
	}
	m := f.GetMetric()[0]
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// lastLine is the last non-empty line of a log.
func lastLine(log string) string {
	lines := slices.DeleteFunc(strings.Split(log, "\n"), func(l string) bool { return strings.TrimSpace(l) == "" })
	if len(lines) == 0 {
		return ""
	}
	return strings.TrimSpace(lines[len(lines)-1])
}
