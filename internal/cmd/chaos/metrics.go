package main

import (
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseMetrics reads a /metrics body into its metric families, by name.
func parseMetrics(body string) (map[string]*dto.MetricFamily, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(strings.NewReader(body))
}

// gaugeValue is the largest sample of a gauge, labelled or not.
func gaugeValue(families map[string]*dto.MetricFamily, name string) (float64, bool) {
	var v float64
	found := false
	for _, m := range families[name].GetMetric() {
		v, found = max(v, m.GetGauge().GetValue()), true
	}
	return v, found
}

// labelled is the series of family f whose label name has a value that
// match accepts.
func labelled(f *dto.MetricFamily, name string, match func(string) bool) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name && match(l.GetValue()) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}
