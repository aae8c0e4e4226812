# procmesh: `make run` starts it end to end on its embedded defaults,
# `make test` runs vet and the race-enabled test suite.
GO      ?= go
BIN     := bin
PKGS    := ./...
FUZZTIME ?= 30s

.PHONY: all build run test vet fmt-check fuzz bench clean generate spire-bin

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	./scripts/dev-run.sh

test: vet spire-bin
	$(GO) test -race -count=1 $(PKGS)

# The real SPIRE server and agent (v1.13.3) the SPIRE tests run against,
# built from test/spire (a module of its own: SPIRE stays out of procmesh's)
# into ${XDG_CACHE_HOME:-~/.cache}/procmesh-spire; only when missing (a cold
# build takes about 7 minutes on 2 cores). PROCMESH_SPIRE_BIN overrides the
# directory.
spire-bin:
	./test/spire/build.sh

vet: fmt-check
	$(GO) vet $(PKGS)

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

# The benchmark suite (bench/README.md): procmesh, HAProxy, nginx, Envoy
# (when installed) and direct mTLS side by side; results in bench/results.
# `make bench` takes under 10 minutes, `make bench-quick` under 2. They install
# what they need with apt-get (bench/install.sh). BENCH_PROCMESH measures a
# prebuilt procmesh instead of building bin/procmesh from this tree;
# BENCH_FLAGS passes procmesh-bench flags (-only, -trials, -keep, ...).
BENCH_PROCMESH ?=
BENCH_FLAGS ?=
BENCH_RUN = GO=$(GO) ./$(BIN)/procmesh-bench -procmesh $(or $(BENCH_PROCMESH),$(BIN)/procmesh) -repo . $(BENCH_FLAGS)

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
