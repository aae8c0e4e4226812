# procmesh: `make run` starts it end to end on its embedded defaults,
# `make test` runs vet and the race-enabled test suite.
GO      ?= go
BIN     := bin
PKGS    := ./...
FUZZTIME ?= 30s

.PHONY: all build run test vet fmt-check fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	./scripts/dev-run.sh

test: vet
	$(GO) test -race -count=1 $(PKGS)

vet: fmt-check
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# Runs every native fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf $(BIN) .run
