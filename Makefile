# Strom — run `make help` for the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Pinned tools are installed with `go install` into a cache outside the
# repository, so a clean clone stays clean and a warm machine skips them.
TOOLS_BIN ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/strom/bin
export STROM_CACHE_BIN := $(TOOLS_BIN)
export PATH := $(TOOLS_BIN):$(PATH)

VERSITYGW_VERSION     := v1.8.0
BUF_VERSION           := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
CONNECT_VERSION       := v1.21.1
GOLANGCI_LINT_VERSION := v2.15.0
GRPCURL_VERSION       := v1.9.3

# gowork is GOWORK=off for a module in GOWORK_OFF (a shell word $$m).
gowork = GOWORK=$$(case " $(GOWORK_OFF) " in *" $(1) "*) echo off;; *) echo "";; esac)

MODULES := api catalog services tiering testenv e2e charts
# charts (the Helm chart's tests) imports nothing of Strom's: it stays out
# of go.work, so that helm's dependencies do not raise the versions the
# other modules build with.
GOWORK_OFF := charts
GOTEST  ?= go test -count=1 -timeout 15m

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: all
all: generate lint test ## Generate, lint and test.

.PHONY: run
run: ## Start Strom with embedded defaults (data under ./data, no PostgreSQL or S3 needed).
	go run ./services/cmd/strom server

.PHONY: build
build: ## Build the strom binary into ./bin.
	go build -o bin/strom ./services/cmd/strom

.PHONY: test
test: tools postgres ## Install what is missing, then run every module's tests against real PostgreSQL and versitygw.
	@start=$$(date +%s); failed=""; \
	for m in $(MODULES); do \
	  echo "== $$m"; \
	  (cd $$m && $(call gowork,$$m) $(GOTEST) -race ./...) || failed="$$failed $$m"; \
	done; \
	echo "make test: $$(( $$(date +%s) - start ))s"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED in:$$failed"; exit 1; fi

.PHONY: bench
bench: tools postgres ## Run the benchmarks; results under bench/results/ (JSON, README.md, PNG charts).
	mkdir -p bench/results
	cd e2e && STROM_BENCH_OUT=$(CURDIR)/bench/results go test -count=1 -timeout 20m -run '^$$' -bench . -benchtime=1x . | tee $(CURDIR)/bench/results/e2e.txt
	cd services && go test -run '^$$' -bench . -benchmem ./... | tee ../bench/results/services.txt
	cd e2e && go run ./bench/report -dir $(CURDIR)/bench/results

.PHONY: lint
lint: $(TOOLS_BIN)/buf $(TOOLS_BIN)/golangci-lint ## gofmt, go vet, golangci-lint and buf lint.
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	for m in $(MODULES); do (cd $$m && export $(call gowork,$$m) && go vet ./... && golangci-lint run --config ../.golangci.yml ./...); done
	cd api && buf lint

.PHONY: generate
generate: $(TOOLS_BIN)/buf $(TOOLS_BIN)/protoc-gen-go $(TOOLS_BIN)/protoc-gen-connect-go ## Regenerate the API code from the protos.
	cd api && buf generate

.PHONY: checkgenerate
checkgenerate: generate ## Fail if generated code differs from what is committed.
	@git diff --exit-code -- api/gen || { echo "generated code is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api/gen)" || { git status --porcelain -- api/gen; echo "untracked generated files: run make generate and commit"; exit 1; }

.PHONY: tools
tools: $(TOOLS_BIN)/versitygw $(TOOLS_BIN)/grpcurl ## Install the pinned tools the tests need.

.PHONY: postgres
postgres: ## Install the Debian postgresql package when its binaries are missing.
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then exit 0; fi; \
	echo "PostgreSQL binaries missing: installing the Debian postgresql package"; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq postgresql >/dev/null

$(TOOLS_BIN)/versitygw:
	GOBIN=$(TOOLS_BIN) go install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)
$(TOOLS_BIN)/buf:
	GOBIN=$(TOOLS_BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS_BIN)/protoc-gen-go:
	GOBIN=$(TOOLS_BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS_BIN)/protoc-gen-connect-go:
	GOBIN=$(TOOLS_BIN) go install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(CONNECT_VERSION)
$(TOOLS_BIN)/golangci-lint:
	GOBIN=$(TOOLS_BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
$(TOOLS_BIN)/grpcurl:
	GOBIN=$(TOOLS_BIN) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
