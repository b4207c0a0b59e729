# segmesh — build, test and demo. Targets that need root re-run themselves
# through sudo only when not already root.
SHELL   := /bin/bash
GO      ?= go
export PATH := $(PATH):/usr/local/go/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
ROOT    := $(if $(filter 0,$(shell id -u)),,sudo -E env "PATH=$(PATH)")
UNIT    := $(shell $(GO) list ./... 2>/dev/null | grep -v /test/e2e)

.PHONY: all build test unit e2e demo demo-down bench lint clean fuzz fuzz-short

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/segmesh ./cmd/segmesh

## test: unit tests, then the end-to-end tests in network namespaces (as root)
test: unit e2e

unit:
	$(ROOT) $(GO) test -count=1 -timeout 10m $(UNIT)

e2e:
	$(ROOT) $(GO) test -count=1 -timeout 15m -v ./test/e2e/

## demo: four nodes (web-1, web-2, app-1, db-1) in namespaces
demo:
	$(ROOT) $(GO) run -ldflags "$(LDFLAGS)" ./test/cmd/demo up

demo-down:
	$(ROOT) $(GO) run ./test/cmd/demo down

## bench: Go benchmarks (compiler, nftables diff and apply against the real kernel)
bench:
	$(ROOT) $(GO) test -run '^$$' -bench . -benchtime 3x ./acl/

## fuzz: every Fuzz target of FUZZPKGS, one after the other, FUZZTIME each
## (plain `go test`, hence `make test`, already runs their seeds and the
## crashers kept in <pkg>/testdata/fuzz/). A crasher is written there by go
## test: keep it as a regression seed. No root needed.
FUZZTIME    ?= 60s
FUZZMINTIME ?= 10s
FUZZPKGS    ?= ./acl ./ca ./gossip ./flows
fuzz:
	@failed=""; \
	for pkg in $(FUZZPKGS); do \
	  targets=$$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz') || { failed="$$failed $$pkg(list)"; continue; }; \
	  for t in $$targets; do \
	    echo "== $$pkg $$t for $(FUZZTIME)"; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) $$pkg \
	      || failed="$$failed $$pkg:$$t"; \
	  done; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz failures:$$failed (crashers in <pkg>/testdata/fuzz/)"; exit 1; fi

## fuzz-short: the same with a CI-sized budget
fuzz-short:
	$(MAKE) fuzz FUZZTIME=5s FUZZMINTIME=5s

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin dist
