# connetd — build, test, benchmark, demo, packages.
# The version is VERSION, plus the commit between releases (scripts/version.sh);
# computed once, so that a build sees one value even if HEAD moves meanwhile.
ifeq ($(origin VERSION),undefined)
VERSION := $(shell scripts/version.sh 2>/dev/null || cat VERSION)
endif
ifeq ($(origin SOURCE_DATE_EPOCH),undefined)
SOURCE_DATE_EPOCH := $(shell scripts/source-date-epoch.sh)
endif
export VERSION SOURCE_DATE_EPOCH
# Static (no shared libraries, no cgo), position-independent, reproducible.
GOFLAGS_BUILD = -trimpath -buildmode=pie -ldflags "-s -w -X github.com/connetd/connetd/version.Version=$(VERSION)"
BIN = bin
DIST = dist
STAGE = $(DIST)/stage
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null || go env GOARCH)
DEB = $(DIST)/connetd_$(VERSION)_$(DEB_ARCH).deb
STATICCHECK_VERSION = v0.8.2

.PHONY: all build test lint unit natlab e2e fuzz fuzz-long bench demo deps clean install stage deb rpm man package-check test-appliance

all: build

build:
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $(BIN)/ ./cmd/connetd ./cmd/connetctl

# deps installs what the tests and the demo need on a Debian machine.
deps:
	scripts/deps.sh

# test is the one command that runs every check CI runs.
test: deps lint unit natlab fuzz man package-check test-appliance

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	go vet ./...
	$$(go env GOPATH)/bin/staticcheck ./...

unit:
	go test -race -count=1 -timeout 20m $$(go list ./... | grep -v '/natlab$$')

# natlab runs the NAT lab (root: network namespaces, iptables) verbosely,
# so the matrix of NAT pairings and routes is printed.
natlab:
	go test -race -count=1 -timeout 15m -v ./natlab/

e2e:
	go test -race -count=1 -timeout 20m ./e2e/

# fuzz runs every fuzz target briefly; corpora found failing stay in testdata.
FUZZTIME ?= 50000x
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

# fuzz-long runs every fuzz target for at least a million executions, for a
# machine that can spare the CPU; make test keeps the short run.
FUZZTIME_LONG ?= 1000000x
fuzz-long:
	scripts/fuzz.sh $(FUZZTIME_LONG)

bench:
	go run ./bench $(BENCHFLAGS)

demo:
	scripts/demo.sh

# install stages every file the packages hold under DESTDIR (empty: onto
# this machine): binaries, units, sysusers.d, sysctl.d, D-Bus policy, man
# pages, completion, documentation, examples, /etc/connet.
install: build
	scripts/install.sh "$(DESTDIR)"

stage: build
	rm -rf $(STAGE)
	scripts/install.sh "$(CURDIR)/$(STAGE)"

# deb and rpm package the same staging tree, offline.
deb: stage
	rm -f $(DIST)/connetd_*.deb
	packaging/deb/build.sh $(STAGE) $(DIST)

rpm: stage
	rm -f $(DIST)/connetd-*.rpm
	packaging/rpm/build.sh $(STAGE) $(DIST)

# man checks the manual pages: mandoc -Tlint, and every config key, default,
# flag and connetctl command documented.
man:
	go test -count=1 ./man/

# package-check runs lintian on the .deb and rpm's query checks on the .rpm,
# installs the .rpm into an empty rpm root, and checks the shell scripts.
package-check: deb rpm
	packaging/check.sh "$(DEB)" "$(DIST)/connetd-$(VERSION)-1.$$(rpm --eval '%{_arch}').rpm"

# test-appliance boots Debian with systemd-nspawn, installs the .deb and uses
# connetd as an administrator would (appliance/README.md).
test-appliance: deb
	appliance/run.sh "$(DEB)"

clean:
	rm -rf $(BIN) $(DIST)
