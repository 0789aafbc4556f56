package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// A page as pointsd writes it: a counter, a gauge and a labelled histogram.
const metricsPage = `# HELP pointsd_cycle_overruns_total Cycles that ran past their period.
# TYPE pointsd_cycle_overruns_total counter
pointsd_cycle_overruns_total 3
# TYPE pointsd_cycle_spread_seconds gauge
pointsd_cycle_spread_seconds 42.5
# TYPE pointsd_cycle_work_seconds histogram
pointsd_cycle_work_seconds_bucket{mode="rolling",le="1"} 1
pointsd_cycle_work_seconds_bucket{mode="rolling",le="+Inf"} 2
pointsd_cycle_work_seconds_sum{mode="rolling"} 3
pointsd_cycle_work_seconds_count{mode="rolling"} 2
pointsd_cycle_work_seconds_bucket{mode="strict",le="1"} 0
pointsd_cycle_work_seconds_bucket{mode="strict",le="+Inf"} 1
pointsd_cycle_work_seconds_sum{mode="strict"} 9
pointsd_cycle_work_seconds_count{mode="strict"} 1
`

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(metricsPage))
	}))
	defer srv.Close()
	m, err := scrape(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if v := value(m, "pointsd_cycle_overruns_total"); v != 3 {
		t.Errorf("counter = %v; want 3", v)
	}
	if v := value(m, "pointsd_cycle_spread_seconds"); v != 42.5 {
		t.Errorf("gauge = %v; want 42.5", v)
	}
	if v := value(m, "pointsd_missing"); v != 0 {
		t.Errorf("a missing metric = %v; want 0", v)
	}
	h := series(m, "pointsd_cycle_work_seconds", "mode", "rolling").GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 3 {
		t.Errorf("rolling histogram: count %d, sum %v; want 2, 3", h.GetSampleCount(), h.GetSampleSum())
	}
	if s := series(m, "pointsd_cycle_work_seconds", "mode", "other"); s != nil {
		t.Errorf("a label value that is not there matched %v", s)
	}
}
