package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pointsd/pointsd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// need returns the path of a command the test needs. Without it the test
// is skipped with the reason, or fails under POINTSD_REQUIRE_DB=1 (CI),
// where a skipped check would pass unnoticed.
func need(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	why := name + " is not installed (apt-get install " + pkg + ")"
	if os.Getenv("POINTSD_REQUIRE_DB") == "1" {
		t.Fatal(why + " and POINTSD_REQUIRE_DB=1 requires this test")
	}
	t.Skip(why)
	return ""
}

// command runs a command and fails t with its output if it fails.
func command(t *testing.T, name string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.CommandContext(t.Context(), name, args...) //nolint:gosec // test: runs a tool found on PATH
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func TestRulesPassPromtool(t *testing.T) {
	t.Parallel()
	promtool := need(t, "promtool", "prometheus")
	command(t, promtool, "check", "rules", "prometheus/rules.yml")
	command(t, promtool, "test", "rules", "prometheus/rules_test.yml")
	// The compose stack's configuration, with the rules it loads.
	command(t, promtool, "check", "config", "prometheus/prometheus.yml")
}

type ruleFile struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Alert, Record, Expr string
			For                 string
			Labels, Annotations map[string]string
		}
	}
}

type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string
			ExpAlerts []any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	}
}

// readYAML reads the fields of path that v names.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path) //nolint:gosec // test: reads the repository's own files
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestAlertsHaveRunbooksAndTests holds every alert to what an operator
// paged at night needs, and to a unit test showing it firing and silent.
func TestAlertsHaveRunbooksAndTests(t *testing.T) {
	t.Parallel()
	var rules ruleFile
	readYAML(t, "prometheus/rules.yml", &rules)
	var tests ruleTests
	readYAML(t, "prometheus/rules_test.yml", &tests)
	if !slices.Equal(tests.RuleFiles, []string{"rules.yml"}) {
		t.Errorf("rules_test.yml tests %v, want [rules.yml]", tests.RuleFiles)
	}
	firing, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				firing[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if s := r.Labels["severity"]; !slices.Contains([]string{"critical", "warning", "info"}, s) {
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary", r.Alert)
			}
			d := r.Annotations["description"]
			for _, part := range []string{"\nCheck: ", "\nDo: "} {
				if !strings.Contains(d, part) {
					t.Errorf("%s: the description (a runbook) has no %q part", r.Alert, strings.TrimSpace(part))
				}
			}
			if !firing[r.Alert] || !silent[r.Alert] {
				t.Errorf("%s: rules_test.yml must show it firing (%v) and not firing (%v)", r.Alert, firing[r.Alert], silent[r.Alert])
			}
		}
	}
	if alerts < 10 {
		t.Errorf("%d alerts in rules.yml, want at least 10", alerts)
	}
}

type composeFile struct {
	Services map[string]struct {
		Image   string
		Build   any
		Command []string
		Ports   []string
		Volumes []string
	}
}

// TestComposeFile checks compose.yaml with docker-compose (skipped without
// it, unless POINTSD_REQUIRE_DB=1), and what no tool checks: what it
// publishes and mounts.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	t.Run("docker-compose config", func(t *testing.T) {
		dc := need(t, "docker-compose", "docker-compose")
		command(t, dc, "-f", "../compose.yaml", "config", "-q")
	})

	var c composeFile
	readYAML(t, "../compose.yaml", &c)
	published := map[string]string{}
	for name, s := range c.Services {
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %q beyond 127.0.0.1", name, p)
			}
			published[name] = p
		}
	}
	want := map[string]string{
		"pointsd-1":  "127.0.0.1:4000:4000",
		"pointsd-2":  "127.0.0.1:4001:4000",
		"prometheus": "127.0.0.1:9090:9090",
		"grafana":    "127.0.0.1:3000:3000",
	}
	for name, p := range want {
		if published[name] != p {
			t.Errorf("%s publishes %q, want %q", name, published[name], p)
		}
	}
	for _, name := range []string{"pointsd-1", "pointsd-2"} {
		if s := c.Services[name]; !slices.Equal(s.Command, []string{"serve"}) || s.Build == nil {
			t.Errorf("%s: command %v, build %v; want serve, built from the Dockerfile", name, s.Command, s.Build)
		}
	}
	mounts := map[string][]string{
		"prometheus": {"./deploy/prometheus:/etc/prometheus:ro"},
		"grafana": {"./deploy/grafana/provisioning:/etc/grafana/provisioning:ro",
			"./deploy/grafana/dashboards:/etc/grafana/dashboards:ro"},
	}
	for name, vs := range mounts {
		for _, v := range vs {
			if !slices.Contains(c.Services[name].Volumes, v) {
				t.Errorf("%s does not mount %s (the provisioning and prometheus.yml expect it)", name, v)
			}
		}
	}

	// Prometheus scrapes the replicas by their service names.
	prom, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{`"pointsd-1:4000"`, `"pointsd-2:4000"`} {
		if !bytes.Contains(prom, []byte(target)) {
			t.Errorf("prometheus.yml does not scrape %s", target)
		}
	}
}
