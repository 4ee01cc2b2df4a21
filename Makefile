# SPDX-License-Identifier: Apache-2.0
# oomtrace: see README.md. `make help` lists the targets.

GO         ?= go
BPF_CLANG  ?= clang-19
BPF_CFLAGS ?= -O2 -g -Wall -Werror -mcpu=v3
BIN        ?= bin/oomtrace
PLUGIN_BIN ?= bin/kubectl-oomtrace
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X github.com/oomtrace/oomtrace/internal/version.Version=$(VERSION)
# The image's tag: deploy/kubernetes references the same file's version
# (a test holds the two together).
IMAGE      ?= oomtrace/oomtrace:$(shell cat VERSION)
IMAGE_ARCH ?= amd64

export BPF_CLANG BPF_CFLAGS

.PHONY: help deps generate build plugin image run test unit fuzz vmtest kernels e2e bench check-generated headers clean

# The kernel matrix: Debian's 5.10, 6.1 and 6.12 cloud kernels on amd64
# and arm64, and on amd64 the newest one the archive offers (newest).
ALL_KERNELS := 5.10 6.1 6.12 newest
ALL_ARCHES  := amd64 arm64
ALL_TIERS   := fentry kprobe tracepoint
KERNELS ?= $(ALL_KERNELS)
ARCHES  ?= $(ALL_ARCHES)
TIERS   ?= $(ALL_TIERS)

# docs/kernels.md holds every kernel, architecture and tier: only a full
# matrix run writes (make vmtest) or checks (make test) it.
ifeq ($(strip $(KERNELS)) $(strip $(ARCHES)) $(strip $(TIERS)),$(ALL_KERNELS) $(ALL_ARCHES) $(ALL_TIERS))
FULL_MATRIX := yes
endif

# Debian packages the tests and `make generate` need; `make deps` installs
# the missing ones (root); tmux runs the table view in a real terminal
# for its tests; qemu-system-arm boots the arm64 kernels, and
# gcc-12-aarch64-linux-gnu builds their test module. prometheus (promtool for the metrics' and alert
# rules' tests, and the end-to-end test's server) comes with the
# end-to-end cluster's packages, whose system services are kept off.
APT_PACKAGES := clang-19 llvm-19 bpftool libbpf-dev zstd busybox-static qemu-system-x86 qemu-system-arm gcc-12 gcc-12-aarch64-linux-gnu make tmux

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install what building BPF and the tests need (Debian packages, Go modules)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing" >&2; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@# the end-to-end cluster's packages (etcd, containerd, prometheus, ...), their system services left off
	bash scripts/e2e/cluster.sh deps
	$(GO) mod download

generate: ## rebuild the BPF objects and Go bindings with $(BPF_CLANG)
	cd internal/bpf && $(GO) generate ./...

build: plugin ## build bin/oomtrace (static, no clang needed) and the kubectl plugin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/oomtrace

plugin: ## build bin/kubectl-oomtrace, the kubectl plugin (`kubectl oomtrace trace -n NS POD` once it is on PATH)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(PLUGIN_BIN) ./cmd/kubectl-oomtrace

image: ## write bin/oomtrace-image.tar: the static binary in a one-layer image tagged $(IMAGE) (no Docker needed; IMAGE_ARCH=arm64 for arm64)
	CGO_ENABLED=0 GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/image-$(IMAGE_ARCH)/oomtrace ./cmd/oomtrace
	$(GO) run ./scripts/mkimage -o bin/oomtrace-image.tar -tag $(IMAGE) -arch $(IMAGE_ARCH) \
		-entrypoint /oomtrace -arg agent bin/image-$(IMAGE_ARCH)/oomtrace=/oomtrace

run: build ## build, then run the agent on this node (root): JSON events on stdout
	./$(BIN) agent

test: deps check-generated build kernels ## run every test (as root): unit, live memcg OOMs on this host, the kernel matrix in qemu
	@unformatted=$$(gofmt -l cmd internal); [ -z "$$unformatted" ] || { echo "gofmt needed: $$unformatted" >&2; exit 1; }
	$(GO) vet ./...
	# -p 1: the live OOM tests time how fast a victim frees its memory; VMs
	# running beside them would slow that down. The kernel table goes to a
	# temporary file and is compared: a test run changes no committed file.
	@table=$$(mktemp); trap 'rm -f "$$table"' EXIT; \
	KERNELS="$(KERNELS)" ARCHES="$(ARCHES)" TIERS="$(TIERS)" OOMTRACE_KERNEL_TABLE=$$table $(GO) test -p 1 -count=1 -timeout 45m ./... || exit 1; \
	if [ "$(FULL_MATRIX)" != yes ]; then \
		echo "docs/kernels.md not checked: KERNELS/ARCHES/TIERS narrow the matrix" >&2; \
	elif [ ! -s "$$table" ]; then \
		echo "docs/kernels.md not checked: the kernel matrix did not run" >&2; \
	elif ! cmp -s "$$table" docs/kernels.md; then \
		diff -u docs/kernels.md "$$table" >&2; \
		echo "docs/kernels.md is out of date: run make vmtest" >&2; exit 1; \
	fi
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory e2e

# The fast suite is `go test -short ./...`: it needs neither root nor VMs.
# Run as root, `make unit` runs it as $(UNIT_USER), which shows it needs
# no privileges: that user gets a module cache filled from this one (no
# network) and its own build cache, both under $(UNIT_DIR).
UNIT_USER ?= nobody
UNIT_DIR  ?= /tmp/oomtrace-unit
unit: ## run the fast suite, go test -short ./... (no root, no VMs; as root, as user $(UNIT_USER))
	@if [ "$$(id -u)" != 0 ]; then exec $(GO) test -short -count=1 ./...; fi; \
	modcache=$$($(GO) env GOMODCACHE) && mkdir -p $(UNIT_DIR) && \
	GOMODCACHE=$(UNIT_DIR)/mod GOPROXY=file://$$modcache/cache/download GOSUMDB=off GOFLAGS=-modcacherw $(GO) mod download && \
	chown -R $(UNIT_USER): $(UNIT_DIR) && \
	echo "go test -short ./... as user $(UNIT_USER)" >&2 && \
	setpriv --reuid=$(UNIT_USER) --regid=$$(id -g $(UNIT_USER)) --clear-groups \
		env HOME=$(UNIT_DIR) GOCACHE=$(UNIT_DIR)/gocache GOMODCACHE=$(UNIT_DIR)/mod GOFLAGS=-modcacherw GOPROXY=off GOTOOLCHAIN=local \
		$(GO) test -short -count=1 ./...

# Every func Fuzz* of the module runs for FUZZTIME (found by go test
# -list, so none is forgotten); inputs that crash one are written to its
# testdata/fuzz directory, to commit with the fix.
FUZZTIME ?= 15s
fuzz: ## run every Go fuzz target for FUZZTIME each (default 15s; FUZZ_RUN=RE narrows by name)
	GO=$(GO) FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

# Each architecture fetches the series it has (arm64: not newest).
kernels: ## fetch the Debian kernels and headers the VM tests boot, and arm64's busybox (cached outside the repo)
	@set -e; for arch in $(ARCHES); do \
		series=$$(for k in $(KERNELS); do [ "$$arch/$$k" = arm64/newest ] || echo $$k; done); \
		[ -z "$$series" ] || bash scripts/vm/fetch-kernels.sh --headers --arch $$arch $$series; \
	done

vmtest: deps kernels ## run the kernel matrix in qemu (KERNELS="6.1" ARCHES="arm64" TIERS="kprobe" narrow it); a full run regenerates docs/kernels.md
	KERNELS="$(KERNELS)" ARCHES="$(ARCHES)" TIERS="$(TIERS)" $(if $(FULL_MATRIX),OOMTRACE_KERNEL_TABLE=$(CURDIR)/docs/kernels.md) $(GO) test -count=1 -timeout 45m -v -run TestMatrix ./internal/kerneltest

e2e: ## bring up a real single-node Kubernetes here, install deploy/kubernetes, run internal/e2e against it, tear it all down (root; Kubernetes binaries cached in /var/cache/oomtrace-e2e)
	bash scripts/e2e/run.sh

# Benchmarks are tests named TestBench* that run only with OOMTRACE_BENCH=1
# (internal/benchreport): each writes its table to bin/bench, and the
# tables are printed together under the machine, kernel and date. Run
# them on an otherwise idle machine; docs/benchmarks.md quotes them.
BENCH_OUT ?= $(CURDIR)/bin/bench
BENCH_RUN ?= ^TestBench
bench: deps build kernels ## run the benchmarks (root, an idle machine; BENCH_RUN=RE narrows): the tables of docs/benchmarks.md, also kept in bin/bench
	@rm -rf $(BENCH_OUT) && mkdir -p $(BENCH_OUT)
	@{ echo "Measured $$(date -u +%F) on $$(uname -r) $$(uname -m), $$(nproc) CPUs ($$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $$(awk '/^MemTotal/ {printf "%.0f GiB", $$2/1048576}' /proc/meminfo) RAM, commit $$(git rev-parse --short HEAD 2>/dev/null || echo unknown)."; } > $(BENCH_OUT)/00-machine.md
	@# the whole log is kept in bin/bench/go-test.log; the terminal gets each test's verdict
	OOMTRACE_BENCH=1 OOMTRACE_BENCH_OUT=$(BENCH_OUT) bash -o pipefail -c '$(GO) test -p 1 -count=1 -timeout 90m -run "$(BENCH_RUN)" -v ./... 2>&1 | tee $(BENCH_OUT)/go-test.log | grep --line-buffered -E "^(--- (PASS|FAIL)|FAIL|panic|ok )" | grep -v "no tests to run"'
	@for f in $(BENCH_OUT)/*.md; do echo; cat "$$f"; done

check-generated: ## regenerate BPF objects and fail if they differ from the committed ones or are new
	$(MAKE) generate
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		changed=$$(git status --porcelain --untracked-files=all -- internal/bpf); \
		[ -z "$$changed" ] || { echo "$$changed" >&2; echo "generated BPF code differs from the committed code: run make generate and commit" >&2; exit 1; }; \
	fi

headers: ## regenerate headers/: vmlinux.h per arch from Debian's kernel packages, the libbpf headers (rarely needed: CO-RE)
	bash scripts/gen-headers.sh

clean: ## remove build output
	rm -rf bin
