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
# DEB_ARCH is the Debian architecture to build and package for: this
# machine's (HOST_ARCH) by default; `make deb rpm DEB_ARCH=armhf` cross-builds
# (packaging/arch.sh maps it to GOARCH and its variant). packages-all builds
# every one of ARCHES.
HOST_ARCH := $(shell dpkg --print-architecture 2>/dev/null || go env GOARCH)
DEB_ARCH ?= $(HOST_ARCH)
ARCH := $(DEB_ARCH)
ARCHES = amd64 arm64 armhf armel mips64el mipsel riscv64 i386
CROSS_ARCHES = $(filter-out $(HOST_ARCH),$(ARCHES))
GOENV := $(shell packaging/arch.sh go $(ARCH) 2>/dev/null)
RPM_ARCH := $(shell packaging/arch.sh rpm $(ARCH) 2>/dev/null)
ifeq ($(GOENV),)
ifneq ($(ARCH),$(HOST_ARCH))
$(error DEB_ARCH=$(ARCH) is not one packaging/arch.sh knows: $(ARCHES))
endif
endif
# Static (no shared libraries, no cgo), reproducible, and not
# position-independent on any architecture: a PIE's loader relocates ~2 MiB
# of read-only data at start, which becomes private memory of every process
# (idle RSS of a client 21 -> 19 MiB without it); on a router that is a
# tenth of the daemon, and address randomisation of the image buys little
# for a memory-safe Go binary without cgo.
GOFLAGS_BUILD = -trimpath -ldflags "-s -w -X github.com/connetd/connetd/version.Version=$(VERSION)"
BIN = bin
DIST = dist
# This machine's architecture builds into bin/ and dist/stage, another one
# into bin/ARCH and dist/stage-ARCH.
ifeq ($(ARCH),$(HOST_ARCH))
ABIN = $(BIN)
STAGE = $(DIST)/stage
else
ABIN = $(BIN)/$(ARCH)
STAGE = $(DIST)/stage-$(ARCH)
endif
DEB = $(DIST)/connetd_$(VERSION)_$(ARCH).deb
RPM = $(DIST)/connetd-$(VERSION)-1.$(RPM_ARCH).rpm
STATICCHECK_VERSION = v0.8.2

.PHONY: all build test lint unit natlab natlab-repeat e2e fuzz fuzz-long bench bench-scale demo deps clean install stage deb rpm man package-check test-appliance \
	packages-all packages-cross test-cross

all: build

build:
	CGO_ENABLED=0 $(GOENV) go build $(GOFLAGS_BUILD) -o $(ABIN)/ ./cmd/connetd ./cmd/connetctl

# deps installs what the tests and the demo need on a Debian machine.
deps:
	scripts/deps.sh

# test is the one command that runs every check CI runs.
test: deps lint unit natlab fuzz man package-check test-cross test-appliance

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

# natlab-repeat runs the NAT lab N times and prints each row's pass count
# (its flake rate); not part of test.
N ?= 10
natlab-repeat:
	scripts/natlab-repeat.sh $(N) $(RUN)

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

# bench measures everything: the control plane at scale (bench-scale), then
# the data plane. bench-scale alone: three control nodes on a real 3-member
# etcd (etcd-server), 5,000 synthetic clients; SCALEFLAGS e.g.
# "-scale-clients 1000 -scale-endpoints 2000".
bench: bench-scale
	go run ./bench $(BENCHFLAGS)

bench-scale:
	go run ./bench -scale $(SCALEFLAGS)

demo:
	scripts/demo.sh

# install stages every file the packages hold under DESTDIR (empty: onto
# this machine): binaries, units, sysusers.d, sysctl.d, D-Bus policy, man
# pages, completion, documentation, examples, /etc/connet.
install: build
	BIN=$(ABIN) scripts/install.sh "$(DESTDIR)"

stage: build
	rm -rf $(STAGE)
	BIN=$(ABIN) scripts/install.sh "$(CURDIR)/$(STAGE)"

# deb and rpm package the same staging tree, offline, for ARCH; rpm only
# where rpm-based distributions have the architecture (packaging/arch.sh).
deb: stage
	rm -f $(DIST)/connetd_*_$(ARCH).deb
	DEB_ARCH=$(ARCH) packaging/deb/build.sh $(STAGE) $(DIST)

rpm: stage
ifeq ($(RPM_ARCH),)
	@echo "rpm: no .rpm for $(ARCH)"
else
	rm -f $(DIST)/connetd-*.$(RPM_ARCH).rpm
	RPM_ARCH=$(RPM_ARCH) packaging/rpm/build.sh $(STAGE) $(DIST)
endif

# packages-all builds the .deb for every architecture in ARCHES and the .rpm
# for those rpm has, into dist/ (connetd_VERSION_ARCH.deb,
# connetd-VERSION-1.RPMARCH.rpm); packages-cross all but this machine's.
packages-all: deb rpm packages-cross

packages-cross:
	@set -e; for a in $(CROSS_ARCHES); do \
		echo "== $$a"; $(MAKE) --no-print-directory deb rpm DEB_ARCH=$$a; \
	done

# man checks the manual pages: mandoc -Tlint, and every config key, default,
# flag and connetctl command documented.
man:
	go test -count=1 ./man/

# package-check runs lintian on the .deb and rpm's query checks on the .rpm,
# installs the .rpm into an empty rpm root, and checks the shell scripts;
# then lintian and the architecture checks on every other architecture's
# packages.
package-check: packages-all
	packaging/check.sh "$(DEB)" "$(RPM)" \
		$(foreach a,$(CROSS_ARCHES),$(DIST)/connetd_$(VERSION)_$(a).deb \
		$(foreach r,$(shell packaging/arch.sh rpm $(a)),$(DIST)/connetd-$(VERSION)-1.$(r).rpm))

# test-cross runs the arm64 and armhf packages' binaries under qemu-user,
# carrying a tunnel on loopback, and installs the arm64 .deb into a Debian
# arm64 root (cross/README.md).
test-cross: packages-all
	cross/run.sh "$(DIST)"

# test-appliance boots Debian with systemd-nspawn, installs the .deb and uses
# connetd as an administrator would (appliance/README.md).
test-appliance: deb
	appliance/run.sh "$(DEB)"

clean:
	rm -rf $(BIN) $(DIST)
