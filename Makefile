# replds build targets. `make proto` needs protoc (Debian: protobuf-compiler)
# and the Go plugins, installed here with `go install`.
GO ?= go
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2
GOBIN ?= $(shell $(GO) env GOPATH)/bin

.PHONY: build test race proto lint bench clean docs check-units

build:
	$(GO) build -o bin/replds ./cmd/replds

test:
	$(GO) test -race -timeout 15m ./...

proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(GOBIN):$$PATH" protoc -I proto \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		proto/replds.proto

# bench builds replds and measures it with real processes on loopback
# (see bench/doc.go). BENCHFLAGS=--quick for a small run; add
# --compare-etcd to run etcd 3.4 (Debian's package) through the same rows.
BENCHFLAGS ?=
bench:
	$(GO) run ./bench $(BENCHFLAGS)

# docs regenerates the command reference in docs/cli from the command tree
# (TestDocs_UpToDate fails when it is stale); man pages: MANDIR=DIR.
MANDIR ?=
docs:
	$(GO) run ./cmd/replds docs --markdown=docs/cli $(if $(MANDIR),--man=$(MANDIR))

# check-units checks examples/systemd with systemd-analyze, when installed.
check-units:
	.ci/check-units

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin
