// Package deploy holds pointsd's deployment artifacts and their tests: the
// Prometheus rules (prometheus/rules.yml, unit-tested by
// prometheus/rules_test.yml), the compose stack's Prometheus
// configuration, and the Grafana dashboard and provisioning (grafana/).
// The repository's compose.yaml runs them.
//
// The tests check the rules with promtool, the compose file with
// docker-compose, and every dashboard query and alert against a real
// Prometheus scraping a real pointsd. There is no Go code to import here.
package deploy
