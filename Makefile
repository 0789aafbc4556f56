# pointsd: make run (a local database, 1M users, the service), make test.
GO ?= go
BIN := bin/pointsd

# make build stamps the version and commit (pointsd version, pointsd_build_info);
# the Dockerfile runs the same (make build-pointsd), passing both in.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)

.PHONY: build build-pointsd run test lint bench bench-scale chaos stack-test fmt-check vet db-stop diagram clean

# A static (no cgo), -trimpath binary, and the dev runner make run uses.
build: build-pointsd
	$(GO) build -o bin/devrun ./internal/cmd/devrun

# The service's binary alone: what the Dockerfile builds.
build-pointsd:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pointsd

# Uses DATABASE_URL when set; otherwise starts (or reuses) a cluster under
# ./.data from the installed PostgreSQL binaries and stops it on exit.
run: build
	@[ -n "$$DATABASE_URL" ] || internal/scripts/ensure-postgres.sh
	bin/devrun -- sh -c '$(BIN) migrate && $(BIN) seed && exec $(BIN) serve'

# The heavy tools are modules of their own, so the service's go.mod holds
# only what the service and its tests need (no plotting for bench). Each
# replaces github.com/pointsd/pointsd with this checkout. make build and the
# Dockerfile need none of them: devrun and staticserve stay in the service.
TOOLS := internal/cmd/bench internal/cmd/chaos internal/cmd/citusbench

# Starts its own PostgreSQL from the server binaries, which it installs when
# they are missing and it can (see internal/scripts/ensure-postgres.sh).
test: fmt-check vet check-tracked
	@[ -n "$$TEST_DATABASE_URL" ] || internal/scripts/ensure-postgres.sh
	$(GO) test -race -count=1 ./...
	@for m in $(TOOLS); do echo "$(GO) -C $$m test -race -count=1 ./..."; \
		$(GO) -C $$m test -race -count=1 ./... || exit 1; done

# golangci-lint at the version .golangci.yml was written for, installed with
# go install when missing (into $(go env GOPATH)/bin).
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(shell $(GO) env GOPATH)/bin/golangci-lint
lint:
	@$(GOLANGCI_LINT) version 2>/dev/null | grep -q "version $(GOLANGCI_LINT_VERSION:v%=%) " || \
		{ echo "installing golangci-lint $(GOLANGCI_LINT_VERSION)"; \
		  $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); }
	$(GOLANGCI_LINT) run ./...
	@for m in $(TOOLS); do echo "(cd $$m && $(GOLANGCI_LINT) run ./...)"; \
		(cd $$m && $(GOLANGCI_LINT) run ./...) || exit 1; done

fmt-check:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.data/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# No tracked file over 1 MB and no tracked executable but scripts: a built
# binary belongs in bin/ (ignored), not in the history.
.PHONY: check-tracked
check-tracked:
	internal/scripts/check-tracked.sh

vet:
	$(GO) vet ./...
	@for m in $(TOOLS); do echo "$(GO) -C $$m vet ./..."; $(GO) -C $$m vet ./... || exit 1; done

# Measures the cost curve (make bench-scale), then pointsd against the
# classic approach, on clusters of its own (never DATABASE_URL's: it drops
# its databases), and rewrites docs/BENCHMARKS-SCALE.md and
# docs/BENCHMARKS.md; about 15 minutes.
bench: bench-scale
	env -u DATABASE_URL bin/devrun -dir .data/bench -db pointsd_bench -- \
		bin/bench -pointsd $(BIN) -static bin/staticserve -out docs

# The cost curve: 1M, 3M and 10M users under several PostgreSQL settings,
# and a paced 10M run under load, on a cluster of its own (./.data/scale);
# rewrites docs/BENCHMARKS-SCALE.md. About 7 minutes; needs ~6 GB of disk.
bench-scale: build
	@command -v wrk >/dev/null || { echo "installing wrk"; apt-get install -y -qq wrk >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }
	$(GO) -C internal/cmd/bench build -o $(CURDIR)/bin/bench .
	$(GO) build -o bin/staticserve ./internal/cmd/staticserve
	env -u DATABASE_URL bin/bench -pointsd $(BIN) -static bin/staticserve -out docs \
		-scale 1000000,3000000,10000000

# Runs the fault matrix against pointsd on a cluster of its own (never
# DATABASE_URL's) and rewrites docs/RELIABILITY.md; about 20 minutes (each
# gray failure lasts 30 s to 1 min). Those need root (for a network
# namespace), iptables and pgbouncer, installed here when missing, and
# Citus for its scenario (internal/scripts/ensure-citus.sh).
chaos: build
	@command -v iptables >/dev/null && command -v pgbouncer >/dev/null || { echo "installing iptables and pgbouncer"; \
		apt-get install -y -qq iptables pgbouncer >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq iptables pgbouncer >/dev/null; }; }
	@internal/scripts/ensure-citus.sh || echo "no Citus: its scenario will report an error"
	$(GO) -C internal/cmd/chaos build -o $(CURDIR)/bin/chaos .
	env -u DATABASE_URL bin/chaos -pointsd $(BIN) -dir .data/chaos -out docs

# Measures pointsd on one PostgreSQL beside a local Citus cluster (a
# coordinator and two workers, then a third) on servers of its own under
# .data/citusbench, and prints the figures of docs/CITUS.md. Needs Citus
# installed (../shared/citus/build-citus.sh). CITUSBENCH_FLAGS=-users=10000000
.PHONY: citusbench
citusbench: build
	$(GO) -C internal/cmd/citusbench build -o $(CURDIR)/bin/citusbench .
	env -u DATABASE_URL bin/citusbench -pointsd $(BIN) -dir .data/citusbench $(CITUSBENCH_FLAGS)

# Builds the image and brings compose.yaml up (all but Grafana) on a
# container engine, then checks it as an operator would (deploy/stack_test.go):
# a Docker engine when one answers, else podman's Docker API (installed and
# started by internal/scripts/ensure-podman.sh, as root). Without registry
# access the official images are replaced by local stand-ins built from
# Debian's packages (deploy/images/build-standins.sh; built once, then
# reused). The dockertest test runs on the same engine. A podman service it
# started is stopped at the end; the images stay. A few minutes.
STACK_ENV = POINTSD_VERSION=$(VERSION) POINTSD_REVISION=$(REVISION) POINTSD_STACK=1 POINTSD_REQUIRE_DOCKER=1
stack-test:
	@eval "$$(internal/scripts/ensure-podman.sh)" && \
	trap '[ -z "$${POINTSD_PODMAN_PID:-}" ] || kill $$POINTSD_PODMAN_PID' EXIT && \
	if [ "$${POINTSD_STANDINS:-}" = 1 ] || ! curl -s -o /dev/null -m 5 https://registry-1.docker.io/v2/; then \
		echo "no container registry answers: building local stand-ins for the official images"; \
		eval "$$(deploy/images/build-standins.sh)"; fi && \
	$(STACK_ENV) $(GO) test -count=1 -timeout 20m -run '^TestStack$$' -v ./deploy/ && \
	$(STACK_ENV) $(GO) test -count=1 -timeout 5m -run '^TestAgainstAContainerPostgres$$' -v ./cmd/pointsd/

# Stops the ./.data cluster if a killed make run left it running.
db-stop:
	@if [ -f .data/pg/postmaster.pid ]; then \
		if [ "$$(id -u)" = 0 ]; then runuser -u postgres -- pg_ctl stop -D .data/pg -m fast; \
		else pg_ctl stop -D .data/pg -m fast; fi; fi

# Renders docs/architecture.svg from docs/architecture.dot with Graphviz
# (Debian's graphviz, installed when missing) and records the source's
# sha256 in it: docs/docs_test.go fails when the two part.
diagram:
	@command -v dot >/dev/null || { echo "installing graphviz"; apt-get install -y -qq graphviz >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq graphviz >/dev/null; }; }
	dot -Tsvg docs/architecture.dot > docs/architecture.svg.tmp
	echo "<!-- source docs/architecture.dot sha256 $$(sha256sum < docs/architecture.dot | cut -d' ' -f1) -->" >> docs/architecture.svg.tmp
	mv docs/architecture.svg.tmp docs/architecture.svg

clean:
	rm -rf bin
