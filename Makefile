# vipguard — see README.md. `make demo` and `make test` are the two commands
# a fresh machine needs; both install missing Debian packages first (root).

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/vipguard/vipguard/internal/cli.Version=$(VERSION)
GO      ?= go
FUZZTIME ?= 10s

.PHONY: all build deps test unit race fuzz demo demo-pair bench bench-failover package test-package lab-clean clean

all: build

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

deps:
	@sh scripts/install-deps.sh

# Every test: unit tests, real MariaDB servers, the namespace lab, the
# Prometheus rules' unit tests (promtool), each fuzz target for $(FUZZTIME),
# and the packages built, installed, upgraded and purged on this machine. A
# missing server or lab is a failure here.
test: deps
	VIPGUARD_REQUIRE_SERVERS=1 VIPGUARD_LAB=1 $(GO) test -count=1 -timeout 40m ./...
	sh scripts/test-prometheus.sh
	@$(MAKE) --no-print-directory fuzz
	sh scripts/test-package.sh

# Tests without the namespace lab (no root needed beyond installed packages).
unit:
	$(GO) test -count=1 ./...

# The tests that need no lab, under the race detector.
race:
	VIPGUARD_REQUIRE_SERVERS=1 $(GO) test -count=1 -race ./cmd/... ./internal/... ./testsupport/...

fuzz:
	@sh scripts/fuzz-all.sh $(FUZZTIME)

# One failover on the namespace lab (real MariaDB pair, keepalived, HAProxy,
# a client writing through the VIP) with a live timeline. Root needed.
demo: deps build
	$(GO) run ./tools/vglab demo

# mysqlcheck's verdicts on a replicating pair through faults (no namespaces).

demo-pair: deps build
	$(GO) run ./tools/pairdemo

# Figures, never assertions: mysqlcheck against the naive shell check, then
# agentcheck against a clustercheck script forked per check, then the Go
# micro-benchmarks.
bench: deps build
	$(GO) run ./tools/benchcheck
	sh scripts/bench-agentcheck.sh 5 4
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/...

# Write-unavailability window per fault scenario (median and worst of 5
# runs), and the kill scenario again on a semi-sync pair.
bench-failover: deps build
	$(GO) run ./tools/vglab bench-failover --runs 5 --semi-sync-kill

# deb and rpm in dist/ (nfpm pinned, run through the Go toolchain; version
# from git or VERSION=1.2.3, reproducible with SOURCE_DATE_EPOCH).
package:
	sh scripts/package.sh

test-package: deps
	sh scripts/test-package.sh

lab-clean:
	$(GO) run ./tools/vglab clean

clean:
	rm -rf bin dist
