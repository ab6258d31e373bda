# Wisp — make help lists the targets.
SHELL := /bin/bash
GO        ?= go
PKGS      ?= ./...
BENCHTIME ?= 2s
BENCH     ?= .
VERSION   ?= dev
BIN       := bin
LDFLAGS   := -s -w -X github.com/wispfn/wisp/internal/version.Version=$(VERSION)

.PHONY: help build test test-short bench bench-peer fixtures lint services clean demo release release

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build the binaries into bin/
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

test: ## run every test with the race detector (skips what needs a missing service, and lists them)
	$(GO) vet $(PKGS)
	$(GO) build -o bin/testreport ./internal/tools/testreport
	set -o pipefail; $(GO) test -race -count=1 -timeout 30m -json $(PKGS) | bin/testreport
	@# Memory-bound and timing tests measure RSS or latency, which the race
	@# detector inflates, and compile-worker tests need a worker binary
	@# without it: they skip themselves under -race and run here without it.
	$(GO) test -count=1 -timeout 20m -run 'RSSBounded|Worker|Flood' ./agent/runtime/ ./internal/e2e/

test-short: ## quick tests only, no race detector
	$(GO) test -short -count=1 $(PKGS)

bench: ## run the benchmarks (BENCHTIME=2s by default; BENCH=regexp picks some, e.g. BENCH=TenThousandAgents PKGS=./internal/e2e/), then bench-peer
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -timeout 90m $(PKGS)
	@$(MAKE) --no-print-directory bench-peer

bench-peer: ## Wisp's runtime against wasmtime on the FunLess-ABI fixtures (bench/wasmtime; skipped without cgo)
	GO=$(GO) bash scripts/bench-peer.sh $(BENCHTIME)

fixtures: ## rebuild the wasm test functions in testdata/ from their sources
	bash scripts/build-fixtures.sh

lint: ## gofmt, go vet, and the import rules of DESIGN.md
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -run 'TestImportRules' ./internal/archtest/

demo: ## run wisp dev (controller + agent + MQTT broker in one process) and invoke a sample function
	bash scripts/demo.sh

services: ## start the local services the tests use (Postgres, Mosquitto, pouchdb-server)
	bash scripts/test-services.sh

release: ## static binaries, tarballs and SHA256SUMS for every platform into builds/dist/ (VERSION=x)
	GO=$(GO) bash scripts/release.sh '$(VERSION)'

clean: ## remove build outputs
	rm -rf $(BIN) builds/dist
