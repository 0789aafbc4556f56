package main

import "testing"

func TestGaugeValue(t *testing.T) {
	body := "# TYPE pointsd_oldest_snapshot_age_seconds gauge\npointsd_oldest_snapshot_age_seconds 42.5\n# TYPE pointsd_oldest_snapshot_age_seconds_other gauge\npointsd_oldest_snapshot_age_seconds_other 99\n"
	families, err := parseMetrics(body)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := gaugeValue(families, "pointsd_oldest_snapshot_age_seconds"); !ok || v != 42.5 {
		t.Errorf("gaugeValue = %v, %v; want 42.5, true", v, ok)
	}
	if _, ok := gaugeValue(families, "pointsd_missing"); ok {
		t.Error("gaugeValue found a metric that is not there")
	}
}

func TestLabelled(t *testing.T) {
	body := `# TYPE pointsd_state_problems gauge
pointsd_state_problems{check="old_snapshot"} 1
pointsd_state_problems{check="citus_workers"} 0
# TYPE pointsd_http_request_duration_seconds histogram
pointsd_http_request_duration_seconds_bucket{code="200",method="GET",route="/",le="+Inf"} 4
pointsd_http_request_duration_seconds_sum{code="200",method="GET",route="/"} 0.1
pointsd_http_request_duration_seconds_count{code="200",method="GET",route="/"} 4
pointsd_http_request_duration_seconds_bucket{code="405",method="M0000001",route="/",le="+Inf"} 1
pointsd_http_request_duration_seconds_sum{code="405",method="M0000001",route="/"} 0.1
pointsd_http_request_duration_seconds_count{code="405",method="M0000001",route="/"} 1
`
	families, err := parseMetrics(body)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := labelled(families["pointsd_state_problems"], "check", namesSnapshot)
	if len(snapshot) != 1 || snapshot[0].GetGauge().GetValue() != 1 {
		t.Errorf("snapshot checks = %v; want the one old_snapshot series at 1", snapshot)
	}
	if n := len(labelled(families["pointsd_http_request_duration_seconds"], "method", fromFlood)); n != 1 {
		t.Errorf("%d series labelled with a flood's method; want 1", n)
	}
}
