package main

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pointsd/pointsd/internal/doccheck"
	"github.com/pointsd/pointsd/internal/pgtest"
)

// The tests of this file keep docs/REFERENCE.md's metrics true to a live
// /metrics: every name, its labels, and the values of its closed labels.

// docMetric is a row of the metrics tables: a name, its labels, and the
// row's text, in which closed label values are named.
type docMetric struct {
	labels []string
	row    string
}

var metricCell = regexp.MustCompile(`^(\w+)(?:\{([\w,]*)\})?$`)

func documentedMetrics(t *testing.T) map[string]docMetric {
	t.Helper()
	ref := reference(t)
	out := map[string]docMetric{}
	for _, heading := range []string{"Metrics", "Pool metrics"} {
		rows, err := doccheck.Table(ref, heading)
		if err != nil {
			t.Fatalf("docs/REFERENCE.md: %v", err)
		}
		for _, r := range rows {
			code := doccheck.Code(r[0])
			m := metricCell.FindStringSubmatch(strings.Join(code, ""))
			if len(code) != 1 || m == nil {
				t.Errorf("docs/REFERENCE.md: metric row %q: want `name{label,…}`", r)
				continue
			}
			var labels []string
			if m[2] != "" {
				labels = strings.Split(m[2], ",")
			}
			slices.Sort(labels)
			out[m[1]] = docMetric{labels: labels, row: strings.Join(r, " | ")}
		}
	}
	return out
}

// openLabels are the labels whose values are not a short closed list for
// the docs to name: they are checked in httpapi and metrics instead.
var openLabels = map[string]bool{"route": true, "method": true, "code": true, "pool": true,
	"version": true, "revision": true, "goversion": true}

// TestReferenceMetrics runs a leader until its cycles finish, so that every
// series it can have exists, and compares its /metrics with the tables.
func TestReferenceMetrics(t *testing.T) {
	t.Parallel()
	documented := documentedMetrics(t)
	addr := freeAddr(t)
	env := map[string]string{"DATABASE_URL": pgtest.NewDB(t, pgtest.Options{Empty: true}), "POINTSD_PERIOD": "500ms"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if code, _, stderr := command(t, ctx, env, "serve", "-addr", addr); code != 0 {
			t.Errorf("serve: exit %d, %s", code, stderr)
		}
	}()
	defer func() { cancel(); <-done }()
	waitStatus(t, "http://"+addr+"/readyz", http.StatusOK)

	// Two finished cycles: the leader has timed a cycle, polled the mode
	// and measured the clock; /status has gone through the router.
	var families map[string]*scraped
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st struct {
			Cycle      int64      `json:"cycle"`
			FinishedAt *time.Time `json:"cycle_finished_at"`
		}
		decodeJSON(t, "http://"+addr+"/status", &st)
		families = scrape(t, "http://"+addr+"/metrics")
		missing := 0
		for name := range documented {
			if families[name] == nil {
				missing++
			}
		}
		if st.Cycle >= 2 && st.FinishedAt != nil && missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			break // and say what is missing below
		}
		time.Sleep(100 * time.Millisecond)
	}

	for name, doc := range documented {
		f := families[name]
		if f == nil {
			t.Errorf("docs/REFERENCE.md documents %s, which /metrics does not have", name)
			continue
		}
		if !slices.Equal(doc.labels, f.labels()) {
			t.Errorf("docs/REFERENCE.md: %s has labels %q, /metrics %q", name, doc.labels, f.labels())
		}
		for label, values := range f.values() {
			if openLabels[label] {
				continue
			}
			for _, v := range values {
				if !strings.Contains(doc.row, "`"+v+"`") {
					t.Errorf("docs/REFERENCE.md: %s{%s} does not name the value %q", name, label, v)
				}
			}
		}
	}
	for name := range families {
		switch {
		case strings.HasPrefix(name, "pointsd_"):
			if _, ok := documented[name]; !ok {
				t.Errorf("/metrics has %s, which docs/REFERENCE.md does not document", name)
			}
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
		default:
			t.Errorf("/metrics has %s, neither pointsd's nor the Go runtime's or process's", name)
		}
	}
}

// scraped is a scraped metric family.
type scraped struct{ series []map[string]string }

func (d *scraped) labels() []string {
	var out []string
	for _, s := range d.series {
		for k := range s {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (d *scraped) values() map[string][]string {
	out := map[string][]string{}
	for _, s := range d.series {
		for k, v := range s {
			if !slices.Contains(out[k], v) {
				out[k] = append(out[k], v)
			}
		}
	}
	return out
}

func scrape(t *testing.T, url string) map[string]*scraped {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	p := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	out := map[string]*scraped{}
	for name, f := range parsed {
		d := &scraped{}
		for _, m := range f.GetMetric() {
			s := map[string]string{}
			for _, l := range m.GetLabel() {
				s[l.GetName()] = l.GetValue()
			}
			d.series = append(d.series, s)
		}
		out[name] = d
	}
	return out
}

func decodeJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}
