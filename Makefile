# SPDX-License-Identifier: Apache-2.0
# oomtrace: see README.md. `make help` lists the targets.

GO         ?= go
BPF_CLANG  ?= clang-19
BPF_CFLAGS ?= -O2 -g -Wall -Werror -mcpu=v3
BIN        ?= bin/oomtrace
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X github.com/oomtrace/oomtrace/internal/version.Version=$(VERSION)

export BPF_CLANG BPF_CFLAGS

.PHONY: help generate build run test check-generated vmlinux clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

generate: ## rebuild the BPF objects and Go bindings with $(BPF_CLANG)
	cd internal/bpf && $(GO) generate ./...

build: ## build bin/oomtrace (static, no clang needed)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/oomtrace

run: build ## build, then run the agent on this node (root): JSON events on stdout
	./$(BIN) agent

test: build ## run every test: unit, live (root, real memcg OOMs), schema
	$(GO) vet ./...
	$(GO) test -count=1 ./...

check-generated: ## regenerate BPF objects and fail if they differ from the committed ones
	$(MAKE) generate
	git diff --exit-code -- internal/bpf

vmlinux: ## regenerate headers/vmlinux.h from this machine's BTF (rarely needed: CO-RE)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > headers/vmlinux.h

clean: ## remove build output
	rm -rf bin
