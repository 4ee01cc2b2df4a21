#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Kubernetes binaries the end-to-end cluster runs (static,
# CGO_ENABLED=0) from the Go module proxy and caches them outside the repo,
# keyed by version: $OOMTRACE_E2E_CACHE/k8s-<version>/bin. A cache that is
# present and complete is used as it is.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod points every
# staging module (k8s.io/api, k8s.io/client-go, ...) at ./staging/...
# So the binaries are built from a throwaway module that requires
# k8s.io/kubernetes and replaces each staging module with its published
# release (v1.X.Y -> v0.X.Y).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
CACHE=${OOMTRACE_E2E_CACHE:-/var/cache/oomtrace-e2e}
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
PACKAGES=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
	k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl)

dest=$CACHE/k8s-$K8S_VERSION
complete() {
	local b
	for b in "${BINARIES[@]}"; do [ -x "$dest/bin/$b" ] || return 1; done
}
if complete; then
	echo "kubernetes $K8S_VERSION: cached in $dest/bin" >&2
	exit 0
fi

mkdir -p "$CACHE"
# One build at a time; one that waited may find the cache filled.
exec 9>"$CACHE/.lock"
flock 9
if complete; then
	echo "kubernetes $K8S_VERSION: cached in $dest/bin" >&2
	exit 0
fi
# Everything is written under a temporary directory beside the cache and
# renamed into place at the end, so a build killed halfway leaves no
# cache that looks complete; what a killed build left is removed here.
rm -rf "$CACHE/.build-$K8S_VERSION".*
work=$(mktemp -d "$CACHE/.build-$K8S_VERSION.XXXXXX")
trap 'rm -rf "$work"' EXIT

staging_version=v0.${K8S_VERSION#v1.}
mod=$work/mod
mkdir -p "$mod" "$work/out/bin"
cd "$mod"
go mod init oomtrace-e2e-k8s >/dev/null 2>&1
go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
# The staging modules are exactly those k8s.io/kubernetes replaces with a
# ./staging/ path: read them from its own go.mod.
gomod=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$gomod" ] || { echo "build-k8s: go.mod of k8s.io/kubernetes@$K8S_VERSION not found" >&2; exit 1; }
staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod")
[ -n "$staging" ] || { echo "build-k8s: no staging modules in $gomod" >&2; exit 1; }
for m in $staging; do
	go mod edit -replace "$m=$m@$staging_version"
done
cat >tools.go <<'GO'
//go:build tools

package tools
GO
for p in "${PACKAGES[@]}"; do echo "import _ \"$p\"" >>tools.go; done
GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
GOFLAGS=-mod=mod go mod download

start=$(date +%s)
# The version is stamped as the release's own, so that the node, kubectl
# and the apiserver report v1.X.Y rather than a development version.
minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags="$ldflags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
echo "building ${BINARIES[*]} $K8S_VERSION" >&2
# nice: the build takes minutes of both CPUs on a machine others share.
CGO_ENABLED=0 GOFLAGS="-mod=mod ${K8S_BUILD_GOFLAGS:-}" \
	nice -n 10 go build -trimpath -ldflags "$ldflags" -o "$work/out/bin/" "${PACKAGES[@]}"
echo "kubernetes $K8S_VERSION built in $(( $(date +%s) - start ))s" >&2

rm -rf "$dest"
mv "$work/out" "$dest"
complete
echo "kubernetes $K8S_VERSION: installed in $dest/bin" >&2
