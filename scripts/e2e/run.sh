#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# make e2e: the agent as a DaemonSet on a real single-node cluster on this
# machine (cluster.sh), checked by the Go tests in internal/e2e. Root only.
#
# Builds (cached) Kubernetes, the agent's image (make image) and the test
# image (memhog), brings the cluster up, imports the images, installs
# deploy/kubernetes through a kustomize overlay that only points the agent
# at this cluster, waits for the DaemonSet's pod to be Ready, runs the
# tests, prints what helps on failure, and tears everything down on every
# exit path. E2E_RUN narrows the tests (go test -run).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
e2e=scripts/e2e
GO=${GO:-go}
MAKE=${MAKE:-make}
MEMHOG_IMAGE=oomtrace-e2e/memhog:1
# Only this cluster's, set below: never a cluster the caller points at.
unset KUBECONFIG OOMTRACE_E2E_DIR

[ "$(id -u)" = 0 ] || {
	echo "e2e: needs root (a kubelet, containerd, BPF)" >&2
	exit 1
}
t0=$SECONDS
bash $e2e/build-k8s.sh
t_build=$SECONDS

diagnostics() {
	echo "===== e2e diagnostics" >&2
	kubectl get nodes,pods -A -o wide >&2 || true
	kubectl get events -A --sort-by=.lastTimestamp >&2 || true
	if [ -n "${OOMTRACE_E2E_AGENT_NAMESPACE:-}" ]; then
		kubectl -n "$OOMTRACE_E2E_AGENT_NAMESPACE" describe pods >&2 || true
		kubectl -n "$OOMTRACE_E2E_AGENT_NAMESPACE" logs --all-containers --tail=200 -l "$(agent_selector)" >&2 || true
	fi
	bash $e2e/cluster.sh logs || true
}

agent_selector() {
	# shellcheck disable=SC2016 # a Go template, not shell
	kubectl -n "$OOMTRACE_E2E_AGENT_NAMESPACE" get daemonset "$OOMTRACE_E2E_AGENT_DAEMONSET" \
		-o go-template='{{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}' | sed 's/,$//'
}

status=1
finish() {
	local rc=$?
	trap - EXIT INT TERM
	[ $status = 0 ] || [ -z "${OOMTRACE_E2E_DIR:-}" ] || diagnostics
	bash $e2e/cluster.sh down || rc=1
	rm -rf "$images"
	echo "e2e: build/cached ${t_build}s, total $((SECONDS - t0))s" >&2
	[ $status = 0 ] || [ $rc != 0 ] || rc=1
	exit $rc
}
images=$(mktemp -d /tmp/oomtrace-e2e-images.XXXXXX)
trap finish EXIT
trap 'exit 130' INT TERM

# Images first, so the cluster runs no longer than the tests need it.
arch=$($GO env GOARCH)
$MAKE --no-print-directory image IMAGE_ARCH="$arch"
mkimage=$images/mkimage
$GO build -o "$mkimage" ./scripts/mkimage
CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w' -o "$images/memhog" ./internal/memhog
"$mkimage" -o "$images/memhog.tar" -tag $MEMHOG_IMAGE -arch "$arch" -entrypoint /memhog "$images/memhog=/memhog"

OOMTRACE_E2E_MKIMAGE=$mkimage bash $e2e/cluster.sh up
t_up=$SECONDS
eval "$(bash $e2e/cluster.sh env)"
# The kubectl plugin, found by this cluster's kubectl on PATH as an
# operator's would be.
mkdir -p "$images/plugin"
$MAKE --no-print-directory plugin PLUGIN_BIN="$images/plugin/kubectl-oomtrace"
export PATH=$images/plugin:$PATH
for tar in bin/oomtrace-image.tar "$images/memhog.tar"; do
	ctr -a "$OOMTRACE_E2E_CRI_SOCKET" -n k8s.io images import "$tar" >/dev/null
done

# The overlay: deploy/kubernetes as it is (kustomize takes a base by
# relative path only), with the apiserver's address (there is no
# kube-proxy to serve the kubernetes Service), and the runtime's socket
# when it is not where the agent looks by default.
overlay=$OOMTRACE_E2E_DIR/overlay
mkdir -p "$overlay"
{
	cat <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- $(realpath --relative-to="$overlay" "$repo/deploy/kubernetes")
patches:
- target: {kind: DaemonSet}
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {name: KUBERNETES_SERVICE_HOST, value: "$OOMTRACE_E2E_API_HOST"}
    - op: add
      path: /spec/template/spec/containers/0/env/-
      value: {name: KUBERNETES_SERVICE_PORT, value: "$OOMTRACE_E2E_API_PORT"}
EOF
	if [ "$OOMTRACE_E2E_CRI_SOCKET" != /run/containerd/containerd.sock ]; then
		cat <<EOF
    - op: add
      path: /spec/template/spec/volumes/-
      value: {name: e2e-cri, hostPath: {path: "$(dirname "$OOMTRACE_E2E_CRI_SOCKET")", type: Directory}}
    - op: add
      path: /spec/template/spec/containers/0/volumeMounts/-
      value: {name: e2e-cri, mountPath: "$(dirname "$OOMTRACE_E2E_CRI_SOCKET")", readOnly: true}
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: "--cri-endpoint=unix://$OOMTRACE_E2E_CRI_SOCKET"
EOF
	fi
} >"$overlay/kustomization.yaml"
kubectl apply -k "$overlay"
ds=$(kubectl get daemonset -A -o jsonpath='{range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}' | head -n1)
[ -n "$ds" ] || {
	echo "e2e: deploy/kubernetes made no DaemonSet" >&2
	exit 1
}
export OOMTRACE_E2E_AGENT_NAMESPACE=${ds%/*} OOMTRACE_E2E_AGENT_DAEMONSET=${ds#*/}
kubectl -n "${ds%/*}" rollout status "daemonset/${ds#*/}" --timeout=120s
kubectl -n "${ds%/*}" wait pod --all --for=condition=Ready --timeout=60s
t_ready=$SECONDS

export OOMTRACE_E2E_MEMHOG_IMAGE=$MEMHOG_IMAGE
# the image's binary, for a test that also runs the agent on the host
export OOMTRACE_E2E_AGENT_BIN=$repo/bin/image-$arch/oomtrace
$GO test -tags e2e -count=1 -v -timeout 20m ${E2E_RUN:+-run "$E2E_RUN"} ./internal/e2e/
status=0
echo "e2e: cluster up in $((t_up - t_build))s (with images), agent Ready $((t_ready - t_up))s later, tests $((SECONDS - t_ready))s" >&2
