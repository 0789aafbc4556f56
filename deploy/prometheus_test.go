package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// promServer is a real Prometheus started by a test.
type promServer struct {
	c    *http.Client
	base string
}

// startPrometheus starts prometheus scraping target every second and
// evaluating the repository's rules every second, and waits until it is
// ready.
func startPrometheus(t *testing.T, c *http.Client, bin, dir, target string) *promServer {
	t.Helper()
	rules, err := filepath.Abs("prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: pointsd
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, bin, nil, nil,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+listen,
		"--log.level=warn")
	p := &promServer{c: c, base: "http://" + listen}
	if err := poll(15*time.Second, func() error { return getOK(t.Context(), c, p.base+"/-/ready") }); err != nil {
		t.Fatal("prometheus is not ready: ", err)
	}
	return p
}

// badQuery is a query Prometheus refused: waiting will not mend it.
type badQuery struct{ msg string }

func (e badQuery) Error() string { return e.msg }

// sample is one series of an instant query's result.
type sample struct {
	metric map[string]string
	value  float64
}

// query runs an instant query and returns its samples (one without labels
// for a scalar).
func (p *promServer) query(ctx context.Context, q string) ([]sample, error) {
	resp, err := get(ctx, p.c, p.base+"/api/v1/query?query="+url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }() // read-only: nothing to lose
	var body struct {
		Status, Error, ErrorType string
		Data                     struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("%s: %w", resp.Status, err)
	}
	if body.Status != "success" {
		if body.ErrorType == "bad_data" {
			return nil, badQuery{body.Error}
		}
		return nil, fmt.Errorf("%s: %s", body.ErrorType, body.Error)
	}
	type series struct {
		Metric map[string]string
		Value  [2]any // [time, "value"]
	}
	var ss []series
	switch body.Data.ResultType {
	case "scalar":
		ss = []series{{}}
		err = json.Unmarshal(body.Data.Result, &ss[0].Value)
	case "vector":
		err = json.Unmarshal(body.Data.Result, &ss)
	default:
		err = fmt.Errorf("result type %s", body.Data.ResultType)
	}
	if err != nil {
		return nil, err
	}
	out := make([]sample, len(ss))
	for i, s := range ss {
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("sample value %v: %w", s.Value[1], err)
		}
		out[i] = sample{metric: s.Metric, value: v}
	}
	return out, nil
}

// hasData says why samples are not data: there are none, or all are NaN.
func hasData(ss []sample) error {
	for _, s := range ss {
		if !math.IsNaN(s.value) {
			return nil
		}
	}
	if len(ss) == 0 {
		return errors.New("no data")
	}
	return fmt.Errorf("only NaN (%d series)", len(ss))
}

type ruleGroups struct {
	Groups []struct {
		Name           string
		LastEvaluation time.Time `json:"lastEvaluation"`
		Rules          []struct {
			Name, Health, Type string
			LastError          string `json:"lastError"`
		}
	}
}

func (p *promServer) rules(ctx context.Context) (ruleGroups, error) {
	var body struct{ Data ruleGroups }
	err := getJSON(ctx, p.c, p.base+"/api/v1/rules", &body)
	return body.Data, err
}

type alert struct {
	Labels map[string]string
	State  string
	Value  string
}

func (p *promServer) alerts(ctx context.Context) ([]alert, error) {
	var body struct{ Data struct{ Alerts []alert } }
	err := getJSON(ctx, p.c, p.base+"/api/v1/alerts", &body)
	return body.Data.Alerts, err
}

// dashQuery is one PromQL query of the dashboard, with Grafana's
// variables replaced.
type dashQuery struct {
	where, expr string
	label       string // for a variable's label_values: the label its values come from
}

// dashboardQueries reads every target and variable query of a Grafana
// dashboard, replacing the variables by vars (Grafana's own, such as
// $__rate_interval, and the dashboard's). A variable missing from vars is
// an error: its query could not be checked.
func dashboardQueries(path string, vars map[string]string) ([]dashQuery, error) {
	b, err := os.ReadFile(path) //nolint:gosec // test: reads the repository's own dashboard
	if err != nil {
		return nil, err
	}
	type panel struct {
		Title   string
		Targets []struct {
			Expr  string
			RefID string `json:"refId"`
		}
		Panels []json.RawMessage
	}
	var d struct {
		Panels     []json.RawMessage
		Templating struct {
			List []struct {
				Name, Type, Definition string
			}
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	var out []dashQuery
	var errs []error
	varRef := regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)
	subst := func(where, expr string) string {
		return varRef.ReplaceAllStringFunc(expr, func(ref string) string {
			m := varRef.FindStringSubmatch(ref)
			name := m[1] + m[2]
			v, ok := vars[name]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: variable $%s has no test value", where, name))
			}
			return v
		})
	}
	var walk func([]json.RawMessage) error
	walk = func(raws []json.RawMessage) error {
		for _, raw := range raws {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				return err
			}
			for _, tg := range p.Targets {
				where := fmt.Sprintf("panel %q, query %s", p.Title, tg.RefID)
				if tg.Expr == "" {
					errs = append(errs, fmt.Errorf("%s: no expr", where))
					continue
				}
				out = append(out, dashQuery{where: where, expr: subst(where, tg.Expr)})
			}
			if err := walk(p.Panels); err != nil { // a collapsed row's panels
				return err
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		where := fmt.Sprintf("variable %s", v.Name)
		m := labelValues.FindStringSubmatch(strings.TrimSpace(v.Definition))
		if m == nil {
			errs = append(errs, fmt.Errorf("%s: %q is not label_values(selector, label)", where, v.Definition))
			continue
		}
		out = append(out, dashQuery{where: where, expr: subst(where, m[1]), label: m[2]})
	}
	return out, errors.Join(errs...)
}

// poll calls check every 100 ms until it returns nil or d has passed, and
// returns its last error. Only for what signals nothing else: a server
// becoming ready, Prometheus collecting samples.
func poll(d time.Duration, check func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
