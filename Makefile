# segmesh — build, test and demo. Targets that need root re-run themselves
# through sudo only when not already root.
SHELL   := /bin/bash
GO      ?= go
export PATH := $(PATH):/usr/local/go/bin
# The release this tree leads to; the version when git has no tag to describe.
BASE_VERSION := 0.2.0
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# vX.Y.Z on a tagged commit, vX.Y.Z-N-gSHA after it (-dirty with local changes).
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || echo v$(BASE_VERSION)-dev+g$(COMMIT))
# Stripped (-s -w) with a GNU build ID made from the Go build ID (-B gobuildid),
# so debuggers and crash tools can still match the binary to its build.
LDFLAGS := -s -w -B gobuildid -X main.version=$(VERSION) -X main.commit=$(COMMIT)
ROOT    := $(if $(filter 0,$(shell id -u)),,sudo -E env "PATH=$(PATH)")
UNIT    := $(shell $(GO) list ./... 2>/dev/null | grep -v /test/e2e)

.PHONY: all build install uninstall print-version test unit e2e soak demo demo-down demo-shell bench bench-deps bench-quick lint clean fuzz fuzz-short package

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/segmesh ./cmd/segmesh

## test: unit tests, then the end-to-end tests in network namespaces (as root)
test: unit e2e

unit:
	$(ROOT) $(GO) test -count=1 -timeout 10m $(UNIT)

e2e:
	$(ROOT) $(GO) test -count=1 -timeout 15m -v ./test/e2e/

## soak: the long reliability tests (test/e2e/rel_*: 90 s partition and heal,
## 12-node churn for 2 min, steady load for SOAK_DURATION with RSS and file
## descriptors sampled every 10 s), as root. Plain `go test` skips them
## unless SEGMESH_SOAK=1. Raise SOAK_TIMEOUT with SOAK_DURATION.
SOAK_DURATION ?= 10m
SOAK_TIMEOUT  ?= 90m
soak:
	$(ROOT) env SEGMESH_SOAK=1 SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -timeout $(SOAK_TIMEOUT) -v -run '^TestRelSoak' ./test/e2e/

## demo: four nodes (web-1, web-2, app-1, db-1) in namespaces; app-1 runs
## workloads api and cron in cgroups (make demo-down removes them). It ends
## in `segmesh top` when stdin and stdout are terminals.
## demo-shell: a shell where segmesh is the demo's binary and talks to web-1
## (SEGMESH_CONFIG); commands piped in run without a prompt.
demo:
	$(ROOT) $(GO) run -ldflags "$(LDFLAGS)" ./test/cmd/demo up

demo-down:
	$(ROOT) $(GO) run ./test/cmd/demo down

demo-shell:
	@$(ROOT) $(GO) run ./test/cmd/demo shell

## bench: the benchmark suite (data plane vs upstream wireguard-go and raw veth,
## crypto ceiling, mesh formation/propagation/revocation, gossip at scale,
## control-plane cost, footprint, workloads, allowed-flow observation,
## quarantine/release, Go benchmarks) in network namespaces (as root): prints
## one table and writes BENCHMARKS.md; `go run ./test/bench/cmd/bench -rows 11a,12 -out FILE`
## runs only some rows (see -help). Under 15 minutes on a
## quiet 2-core machine. Not part of `make test`.
bench:
	$(ROOT) $(GO) run ./test/bench/cmd/bench -out BENCHMARKS.md

## bench-deps: the Debian packages the benchmark suite runs (as root)
bench-deps:
	@need=""; for p in iperf3:iperf3 nft:nftables wg:wireguard-tools ping:iputils-ping perf:linux-perf; do \
	  command -v $${p%%:*} >/dev/null || need="$$need $${p#*:}"; done; \
	if [ -n "$$need" ]; then echo "installing:$$need"; \
	  $(ROOT) apt-get update -qq && $(ROOT) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need; fi

## bench-quick: the same suite reduced (fewer/shorter runs, 50 gossip nodes), under 3 minutes
bench-quick:
	$(ROOT) $(GO) run ./test/bench/cmd/bench -quick -out BENCHMARKS.md

## fuzz: every Fuzz target of FUZZPKGS, one after the other, FUZZTIME each
## (plain `go test`, hence `make test`, already runs their seeds and the
## crashers kept in <pkg>/testdata/fuzz/). A crasher is written there by go
## test: keep it as a regression seed. No root needed. Go 1.26's fuzz
## coordinator can fail a target with a bare "context deadline exceeded" at
## the end of FUZZTIME (golang/go#75804, fixed in Go 1.27): that failure,
## when it wrote no crasher, is reported and ignored.
FUZZTIME    ?= 60s
FUZZMINTIME ?= 10s
FUZZPKGS    ?= ./acl ./ca ./gossip ./flows
fuzz:
	@failed=""; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for pkg in $(FUZZPKGS); do \
	  targets=$$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz') || { failed="$$failed $$pkg(list)"; continue; }; \
	  for t in $$targets; do \
	    echo "== $$pkg $$t for $(FUZZTIME)"; \
	    before=$$(ls $$pkg/testdata/fuzz/$$t 2>/dev/null | wc -l); \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) $$pkg 2>&1 | tee $$out; \
	    rc=$${PIPESTATUS[0]}; \
	    after=$$(ls $$pkg/testdata/fuzz/$$t 2>/dev/null | wc -l); \
	    if [ $$rc -ne 0 ]; then \
	      if [ "$$after" = "$$before" ] && grep -qx '    context deadline exceeded' $$out && ! grep -q -- '--- FAIL: .*/' $$out; then \
	        echo "== $$pkg $$t: deadline race of the Go fuzz coordinator (golang/go#75804), no crasher: ignored"; \
	      else failed="$$failed $$pkg:$$t"; fi; \
	    fi; \
	  done; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz failures:$$failed (crashers in <pkg>/testdata/fuzz/)"; exit 1; fi

## fuzz-short: the same with a CI-sized budget
fuzz-short:
	$(MAKE) fuzz FUZZTIME=5s FUZZMINTIME=5s

## install: the binary, systemd unit, sysusers.d entry, man pages, completions
## and examples under $(DESTDIR)$(PREFIX) (packaging/install.sh says where
## each goes); /etc/segmesh/segmesh.yaml only when there is none. Without
## DESTDIR it also creates the segmesh user and /var/lib/segmesh (as root), and
## enables nothing. uninstall removes the same files, keeping config and state.
PREFIX  ?= /usr/local
DESTDIR ?=
INSTALL_AS = $(if $(DESTDIR),,$(ROOT))
install:
	@stage=$$(mktemp -d) && trap 'rm -rf "$$stage"' EXIT && \
	GO="$(GO)" LDFLAGS="$(LDFLAGS)" packaging/stage.sh "$$stage" && \
	$(INSTALL_AS) env PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" packaging/install.sh install "$$stage"

uninstall:
	@$(INSTALL_AS) env PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" packaging/install.sh uninstall

## package: .deb and .rpm into $(DIST) with nfpm (a pinned Go tool, run through the
## module proxy; v2.46+ needs modules the proxy does not serve here), staged in a
## temporary directory that is removed afterwards. PKG_VERSION is VERSION without
## its "v", in a form both formats order right: 0.2.0, 0.2.0+3.gSHA after the tag,
## +dirty/.dirty with local changes, 0.2.0~dev+gSHA without tags.
NFPM_VERSION ?= v2.45.0
NFPM        ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
DIST        ?= dist
ARCH        ?= $(shell $(GO) env GOARCH)
PKG_VERSION ?= $(shell echo '$(VERSION)' | sed -E 's/^v//; s/-([0-9]+)-g([0-9a-f]+)/+\1.g\2/; s/-dev\+/~dev+/; s/-dirty$$/.dirty/; s/^([^+]*)\.dirty$$/\1+dirty/')
package:
	@mkdir -p $(DIST) && stage=$$(mktemp -d) && trap 'rm -rf "$$stage"' EXIT && \
	GO="$(GO)" LDFLAGS="$(LDFLAGS)" ARCH="$(ARCH)" packaging/stage.sh "$$stage" && \
	dist=$$(cd $(DIST) && pwd) && cd "$$stage" && for p in deb rpm; do \
	  ARCH=$(ARCH) PKG_VERSION=$(PKG_VERSION) $(NFPM) package -f nfpm.yaml -p $$p -t "$$dist/" || exit 1; \
	done

## print-version: the VERSION and PKG_VERSION this tree builds
print-version:
	@echo "VERSION=$(VERSION)"; echo "PKG_VERSION=$(PKG_VERSION)"

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags mangen ./cmd/segmesh

clean:
	rm -rf bin dist
