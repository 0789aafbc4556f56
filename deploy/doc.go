// Package deploy holds pointsd's deployment artifacts and their tests: the
// Prometheus rules (prometheus/rules.yml, unit-tested by
// prometheus/rules_test.yml), the compose stack's Prometheus
// configuration, and the Grafana dashboard and provisioning (grafana/).
// The repository's compose.yaml runs them.
//
// The tests check the rules with promtool, the compose file with
// docker-compose, and every dashboard query and alert against a real
// Prometheus scraping a real pointsd; make stack-test brings the compose
// stack up on a container engine and checks it (stack_test.go). images/
// builds local stand-ins for the official images, for machines without
// registry access. There is no Go code to import here.
package deploy
