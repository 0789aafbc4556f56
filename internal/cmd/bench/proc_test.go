package main

import "testing"

// The exchange's writes are read from pointsd's /metrics: the counter by
// its exact name, not one it prefixes.
func TestCounterIn(t *testing.T) {
	metrics := "# HELP pointsd_query_time_publishes_total Writes.\n# TYPE pointsd_query_time_publishes_total counter\n" +
		"pointsd_query_time_publishes_total_other 9\npointsd_query_time_publishes_total 42\n"
	if v, err := counterIn(metrics, publishesMetric); err != nil || v != 42 {
		t.Errorf("counterIn = %v, %v; want 42", v, err)
	}
	if _, err := counterIn("up 1\n", publishesMetric); err == nil {
		t.Error("counterIn without the counter: no error")
	}
}
