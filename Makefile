# connetd — build, test, benchmark, demo.
VERSION ?= $(shell cat VERSION 2>/dev/null || git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD = -trimpath -ldflags "-s -w -X github.com/connetd/connetd/version.Version=$(VERSION)"
BIN = bin
STATICCHECK_VERSION = v0.8.2

.PHONY: all build test lint unit e2e fuzz bench demo deps clean

all: build

build:
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $(BIN)/ ./cmd/connetd ./cmd/connetctl

# deps installs what the tests and the demo need on a Debian machine.
deps:
	scripts/deps.sh

# test is the one command that runs every check CI runs.
test: deps lint unit fuzz

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	go vet ./...
	$$(go env GOPATH)/bin/staticcheck ./...

unit:
	go test -race -count=1 -timeout 20m ./...

e2e:
	go test -race -count=1 -timeout 20m ./e2e/

# fuzz runs every fuzz target briefly; corpora found failing stay in testdata.
FUZZTIME ?= 50000x
fuzz:
	scripts/fuzz.sh $(FUZZTIME)

bench:
	go run ./bench $(BENCHFLAGS)

demo:
	scripts/demo.sh

clean:
	rm -rf $(BIN) dist
