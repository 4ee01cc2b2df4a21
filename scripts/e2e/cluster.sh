#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A real single-node Kubernetes cluster on this machine, for the end-to-end
# tests (README.md, "End-to-end: a real Kubernetes node"). Root only.
#
#   cluster.sh deps    install the Debian packages it runs (their system
#                      services stay off)
#   cluster.sh up      tear down a cluster a killed run left, start a new one,
#                      wait for the node to be Ready
#   cluster.sh down    stop it and undo everything it did to the host
#   cluster.sh env     print the shell variables that reach it
#
# Kubernetes binaries come from build-k8s.sh's cache. Everything else lives
# in a temporary directory: etcd's data, certificates, kubeconfigs, its own
# containerd (config, state, socket), kubelet's root and pod logs. What
# cannot live there is recorded in $OOMTRACE_E2E_STATE (under /run) before
# it is touched, so that `down`, run from a trap or by the next `up` after a
# SIGKILL, can undo it: kernel sysctls kubelet changes, cgroups under the
# kubelet's own cgroup root in every hierarchy, mounts (kubelet's root is a
# shared bind mount; containerd mounts shm and overlays), and files at fixed
# paths (/var/lib/kubelet/device-plugins/kubelet.sock, /var/log/containers,
# /run/containerd/s, /var/lib/cni).
#
# The node is named `localhost`: the apiserver reaches the kubelet by the
# node's host name (--kubelet-preferred-address-types=Hostname,...), the
# kubelet listens on 127.0.0.1 only, and that name resolves to it on any
# machine without an /etc/hosts entry to add and remove.
#
# containerd listens on /run/containerd/containerd.sock, the runtime's usual
# socket that agents detect, when nothing is there; otherwise on a socket in
# the temporary directory. `env` prints which (OOMTRACE_E2E_CRI_SOCKET).
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
CACHE=${OOMTRACE_E2E_CACHE:-/var/cache/oomtrace-e2e}
K8S_BIN=$CACHE/k8s-$K8S_VERSION/bin
STATE=${OOMTRACE_E2E_STATE:-/run/oomtrace-e2e}
NODE=localhost
CGROUP_ROOT=oomtrace-e2e # kubelet's cgroupRoot: never /kubepods, which the host tests own
ETCD_PORT=${OOMTRACE_E2E_ETCD_PORT:-12379}
API_PORT=${OOMTRACE_E2E_API_PORT:-16443}
KUBELET_PORT=${OOMTRACE_E2E_KUBELET_PORT:-10250}
KUBELET_HEALTHZ_PORT=${OOMTRACE_E2E_KUBELET_HEALTHZ_PORT:-10248}
SERVICE_CIDR=10.96.0.0/24
PAUSE_IMAGE=oomtrace-e2e/pause:1
FEATURE_GATES=PodLevelResources=true # seed 004: a pod-level memory limit
# prometheus: the metrics test's own server, and promtool for the unit tests.
APT_PACKAGES=(etcd-server containerd runc containernetworking-plugins openssl procps prometheus)
# The sysctls kubelet sets when protectKernelDefaults is false.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
STANDARD_CRI_SOCKET=/run/containerd/containerd.sock
REPO=$(cd "$(dirname "$0")/../.." && pwd)

log() { echo "cluster: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# --- packages -----------------------------------------------------------

# deps installs the missing packages. Their services are kept from starting
# (policy-rc.d, honoured by invoke-rc.d and deb-systemd-invoke) and
# disabled: the cluster runs its own instances, and a system containerd
# would take the runtime's usual socket.
deps() {
	local missing=() p
	for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	[ ${#missing[@]} -gt 0 ] || return 0
	log "installing ${missing[*]}"
	local policy=/usr/sbin/policy-rc.d own_policy=
	if [ ! -e $policy ]; then
		printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && own_policy=yes
	fi
	local rc=0
	{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } || rc=$?
	[ -z "$own_policy" ] || rm -f $policy
	[ $rc = 0 ] || die "apt-get install ${missing[*]} failed"
	local service
	for p in "${missing[@]}"; do
		case $p in
		etcd-server) service=etcd ;;
		containerd) service=containerd ;;
		prometheus) service=prometheus ;;
		*) continue ;;
		esac
		if [ -d /run/systemd/system ]; then
			systemctl disable --now "$service.service" >/dev/null 2>&1 || true
		elif [ -x "/etc/init.d/$service" ]; then
			update-rc.d "$service" disable >/dev/null 2>&1 || true
		fi
	done
}

# --- state --------------------------------------------------------------

# record NAME VALUE appends a shell assignment to the state file, which
# `down` sources.
record() { printf '%s=%q\n' "$1" "$2" >>"$STATE/state"; }

# existed PATH records whether PATH existed before the cluster, so that
# `down` removes only what the cluster created.
existed() {
	local var=$1 path=$2
	if [ -e "$path" ]; then record "$var" yes; else record "$var" no; fi
}

# --- certificates -------------------------------------------------------

# cert NAME CN [O] [SANS]: a key and a certificate signed by the cluster CA,
# for serving and client auth.
cert() {
	local name=$1 cn=$2 org=${3:-} sans=${4:-} subj
	subj="/CN=$cn"
	[ -z "$org" ] || subj="$subj/O=$org"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	{
		echo "extendedKeyUsage=serverAuth,clientAuth"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		[ -z "$sans" ] || echo "subjectAltName=$sans"
	} >"$PKI/$name.ext"
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 7 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
}

pki() {
	mkdir -p "$PKI"
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$PKI/ca.key" -subj "/CN=oomtrace-e2e-ca" -days 7 -out "$PKI/ca.crt" 2>/dev/null
	cert apiserver kube-apiserver "" "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:${SERVICE_CIDR%.0/*}.1"
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	cert admin admin system:masters
	cert controller-manager system:kube-controller-manager
	cert scheduler system:kube-scheduler
	cert kubelet "system:node:$NODE" system:nodes
	cert kubelet-serving "$NODE" "" "DNS:$NODE,IP:127.0.0.1"
	openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/sa.key" 2>/dev/null
	openssl ec -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# kubeconfig NAME: a kubeconfig for the certificate NAME.
kubeconfig() {
	local name=$1
	cat >"$W/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: oomtrace-e2e
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $name
  user:
    client-certificate: $PKI/$name.crt
    client-key: $PKI/$name.key
contexts:
- name: oomtrace-e2e
  context: {cluster: oomtrace-e2e, user: $name}
current-context: oomtrace-e2e
EOF
}

# --- cgroups ------------------------------------------------------------

# hierarchies prints the mount point of every cgroup hierarchy (v1
# controllers, named ones, the unified one).
hierarchies() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts; }

# memory_hierarchy prints where the memory controller is: v1's memory
# hierarchy or the unified one.
memory_hierarchy() {
	local h
	h=$(awk '$3 == "cgroup" && $4 ~ /(^|,)memory(,|$)/ {print $2; exit}' /proc/mounts)
	[ -n "$h" ] || h=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
	echo "$h"
}

# make_cgroup_root creates the kubelet's cgroup root in every hierarchy (the
# kubelet requires it) and the harness's own cgroup under it, where every
# daemon runs: `down` then finds every process to stop, and the memory the
# cluster holds is one number.
make_cgroup_root() {
	local h
	for h in $(hierarchies); do
		mkdir -p "$h/$CGROUP_ROOT"
		if [ -f "$h/cpuset.cpus" ]; then
			cat "$h/cpuset.cpus" >"$h/$CGROUP_ROOT/cpuset.cpus"
			cat "$h/cpuset.mems" >"$h/$CGROUP_ROOT/cpuset.mems"
		fi
	done
	for h in $(harness_cgroups); do mkdir -p "$h"; done
}

# harness_cgroups prints the harness's cgroup in the memory and pids
# hierarchies.
harness_cgroups() {
	local h
	for h in "$(memory_hierarchy)" $(awk '$3 == "cgroup" && $4 ~ /(^|,)pids(,|$)/ {print $2}' /proc/mounts); do
		echo "$h/$CGROUP_ROOT/harness"
	done
}

# cgroup_pids prints every process in the cgroup root's tree.
cgroup_pids() {
	local h
	h=$(memory_hierarchy)
	[ -d "$h/$CGROUP_ROOT" ] || return 0
	find "$h/$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

# remove_cgroups removes the cgroup root's tree in every hierarchy, deepest
# first. A memory cgroup whose last process just died can stay busy for a
# moment: retry.
remove_cgroups() {
	local h left
	for _ in $(seq 50); do
		left=
		for h in $(hierarchies); do
			[ -d "$h/$CGROUP_ROOT" ] || continue
			find "$h/$CGROUP_ROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[ ! -d "$h/$CGROUP_ROOT" ] || left="$left $h/$CGROUP_ROOT"
		done
		[ -n "$left" ] || return 0
		sleep 0.1
	done
	log "cgroups left behind:$left"
	return 1
}

# --- processes ----------------------------------------------------------

# start NAME CMD...: runs a daemon in the harness cgroup, in a session of
# its own (a terminal's ^C reaches the trap, not the daemons), its output in
# $W/logs/NAME.log.
start() {
	local name=$1
	shift
	(
		for cg in $(harness_cgroups); do echo $BASHPID >"$cg/cgroup.procs"; done
		exec setsid "$@"
	) </dev/null >"$W/logs/$name.log" 2>&1 &
	echo $! >"$W/pids/$name"
}

# stop_processes stops the kubelet first (so it restarts nothing), then
# every process in the cgroup root's tree: daemons, shims, containers.
stop_processes() {
	local pid
	if [ -f "$W/pids/kubelet" ]; then
		pid=$(cat "$W/pids/kubelet")
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	signal_all TERM 30 || signal_all KILL 50
}

# signal_all SIG TRIES sends SIG to every process in the tree until none is
# left, TRIES times 0.1 s at most.
signal_all() {
	local sig=$1 tries=$2 pids
	for _ in $(seq "$tries"); do
		pids=$(cgroup_pids)
		[ -n "$pids" ] || return 0
		# shellcheck disable=SC2086
		kill -"$sig" $pids 2>/dev/null || true
		sleep 0.1
	done
	[ "$sig" != KILL ] || log "processes left behind: $(cgroup_pids | tr '\n' ' ')"
	return 1
}

# --- mounts -------------------------------------------------------------

# mounts_under DIR prints the mount points at or under DIR, deepest first.
mounts_under() {
	local dir=$1
	# /proc/self/mountinfo's mount point is field 5, octal-escaped.
	awk -v d="$dir" '{ m = $5; gsub(/\\040/, " ", m); if (m == d || index(m, d "/") == 1) print m }' /proc/self/mountinfo |
		awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}

unmount_under() {
	local dir=$1 m
	for _ in $(seq 10); do
		[ -n "$(mounts_under "$dir")" ] || return 0
		while IFS= read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done < <(mounts_under "$dir")
	done
	log "mounts left behind: $(mounts_under "$dir" | tr '\n' ' ')"
	return 1
}

# --- down ---------------------------------------------------------------

down() {
	[ -f "$STATE/state" ] || return 0
	local start_time=$SECONDS ok=yes
	# shellcheck disable=SC1091
	. "$STATE/state"
	W=${WORK:?state without WORK}
	log "tearing down the cluster in $W (holding $(held_mib) MiB)"
	stop_processes || ok=
	unmount_under "$W" || ok=
	remove_cgroups || ok=
	restore_sysctls || ok=
	remove_host_files
	# --one-file-system: never into a mount that could not be removed
	rm -rf --one-file-system "$W"
	if [ -n "$ok" ]; then
		rm -rf "$STATE"
		log "down in $((SECONDS - start_time))s"
	else
		# Kept for another `down` to finish the job.
		log "teardown incomplete: run $0 down again"
		return 1
	fi
}

# restore_sysctls sets back the values recorded before the kubelet ran and
# fails if one does not take.
restore_sysctls() {
	local name value ok=yes
	[ -f "$STATE/sysctls" ] || return 0
	while read -r name value; do
		[ "$(sysctl -n "$name" 2>/dev/null)" = "$value" ] && continue
		sysctl -q -w "$name=$value" >/dev/null 2>&1 || true
		[ "$(sysctl -n "$name" 2>/dev/null)" = "$value" ] || {
			log "cannot restore $name=$value"
			ok=
		}
	done <"$STATE/sysctls"
	[ -n "$ok" ]
}

# remove_host_files removes what the kubelet and containerd write at fixed
# paths outside the temporary directory: the whole directory where the
# cluster created it, else only the cluster's entries.
remove_host_files() {
	local f
	if [ "${HAD_VAR_LIB_KUBELET:-yes}" = no ]; then
		rm -rf /var/lib/kubelet
	else
		rm -f /var/lib/kubelet/device-plugins/kubelet.sock
	fi
	if [ "${HAD_VAR_LOG_CONTAINERS:-yes}" = no ]; then
		rm -rf /var/log/containers
	elif [ -d /var/log/containers ]; then
		# kubelet's links to the pod logs under $W
		for f in /var/log/containers/*.log; do
			[ -L "$f" ] || continue
			case $(readlink "$f") in "$W"/*) rm -f "$f" ;; esac
		done
	fi
	if [ "${HAD_VAR_LIB_CNI:-yes}" = no ]; then rm -rf /var/lib/cni; fi
	if [ "${CRI_SOCKET:-}" = "$STANDARD_CRI_SOCKET" ]; then rm -f "$CRI_SOCKET" "$CRI_SOCKET.ttrpc"; fi
	if [ "${HAD_RUN_CONTAINERD:-yes}" = no ]; then
		rm -rf /run/containerd
	elif [ -d /run/containerd/s ]; then
		# shim sockets: those that were not there before the cluster
		for f in /run/containerd/s/*; do
			[ -e "$f" ] || continue
			grep -qxF "${f##*/}" "$STATE/shim-sockets" 2>/dev/null || rm -f "$f"
		done
		[ "${HAD_RUN_CONTAINERD_S:-yes}" = yes ] || rmdir /run/containerd/s 2>/dev/null || true
	fi
}

# --- up -----------------------------------------------------------------

up() {
	[ "$(id -u)" = 0 ] || die "needs root"
	down || die "a previous cluster could not be torn down"
	for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
		[ -x "$K8S_BIN/$b" ] || die "$K8S_BIN/$b missing: run scripts/e2e/build-k8s.sh"
	done
	deps
	local start_time=$SECONDS
	mkdir -p "$STATE"
	W=$(mktemp -d /tmp/oomtrace-e2e.XXXXXX)
	: >"$STATE/state"
	record WORK "$W"
	# From here on a failure, or a signal, tears down what was started.
	trap 'rc=$?; trap - EXIT; log "bring-up failed"; dump_logs; down; exit $rc' EXIT
	trap 'exit 130' INT TERM

	PKI=$W/pki
	# kubectl's discovery cache, else in ~/.kube
	export KUBECACHEDIR=$W/kubectl-cache
	mkdir -p "$W/logs" "$W/pids"
	for s in "${SYSCTLS[@]}"; do echo "$s $(sysctl -n "$s")"; done >"$STATE/sysctls"
	existed HAD_VAR_LIB_KUBELET /var/lib/kubelet
	existed HAD_VAR_LOG_CONTAINERS /var/log/containers
	existed HAD_VAR_LIB_CNI /var/lib/cni
	existed HAD_RUN_CONTAINERD /run/containerd
	existed HAD_RUN_CONTAINERD_S /run/containerd/s
	ls /run/containerd/s 2>/dev/null >"$STATE/shim-sockets" || true
	CRI_SOCKET=${OOMTRACE_E2E_CRI_SOCKET:-}
	if [ -z "$CRI_SOCKET" ]; then
		if [ -e $STANDARD_CRI_SOCKET ]; then CRI_SOCKET=$W/containerd/containerd.sock; else CRI_SOCKET=$STANDARD_CRI_SOCKET; fi
	fi
	record CRI_SOCKET "$CRI_SOCKET"
	make_cgroup_root

	pki
	for k in admin controller-manager scheduler kubelet; do kubeconfig $k; done

	start etcd etcd --name oomtrace-e2e --data-dir "$W/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
		--initial-cluster "oomtrace-e2e=http://127.0.0.1:$((ETCD_PORT + 1))" \
		--quota-backend-bytes $((1 << 30))
	containerd_config
	start_runtime

	# No --allow-privileged: the apiserver refuses privileged containers,
	# and deploy/kubernetes must work without.
	start kube-apiserver "$K8S_BIN/kube-apiserver" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
		--tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
		--client-ca-file "$PKI/ca.crt" \
		--authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
		--service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
		--service-account-issuer https://kubernetes.default.svc \
		--service-cluster-ip-range "$SERVICE_CIDR" \
		--kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
		--kubelet-preferred-address-types Hostname,InternalIP \
		--endpoint-reconciler-type none \
		--feature-gates "$FEATURE_GATES"
	start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
		--kubeconfig "$W/controller-manager.kubeconfig" \
		--authentication-kubeconfig "$W/controller-manager.kubeconfig" --authorization-kubeconfig "$W/controller-manager.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
		--use-service-account-credentials \
		--service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
		--cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
		--controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller' \
		--feature-gates "$FEATURE_GATES"
	start kube-scheduler "$K8S_BIN/kube-scheduler" \
		--kubeconfig "$W/scheduler.kubeconfig" \
		--authentication-kubeconfig "$W/scheduler.kubeconfig" --authorization-kubeconfig "$W/scheduler.kubeconfig" \
		--bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
		--feature-gates "$FEATURE_GATES"

	wait_for "the apiserver" 60 "$K8S_BIN/kubectl" --kubeconfig "$W/admin.kubeconfig" get --raw /readyz
	wait_for "containerd" 30 ctr -a "$CRI_SOCKET" version
	import_pause

	start kubelet "$K8S_BIN/kubelet" --config "$(kubelet_config)" \
		--kubeconfig "$W/kubelet.kubeconfig" --root-dir "$W/kubelet" --cert-dir "$W/kubelet/pki" \
		--hostname-override "$NODE"
	wait_for "node $NODE Ready" 90 node_ready
	wait_for "the default service account" 30 "$K8S_BIN/kubectl" --kubeconfig "$W/admin.kubeconfig" get serviceaccount default
	trap - EXIT INT TERM
	log "up in $((SECONDS - start_time))s, holding $(held_mib) MiB; $0 env prints how to reach it"
}

# held_mib is the memory charged to the cluster's cgroups: daemons, shims,
# pods, and the page cache they brought in.
held_mib() {
	local h f
	h=$(memory_hierarchy)/$CGROUP_ROOT
	for f in memory.usage_in_bytes memory.current; do
		[ ! -f "$h/$f" ] || {
			echo $(($(cat "$h/$f") >> 20))
			return
		}
	done
	echo "?"
}

node_ready() {
	[ "$("$K8S_BIN/kubectl" --kubeconfig "$W/admin.kubeconfig" get node "$NODE" \
		-o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# wait_for WHAT SECONDS CMD...: runs CMD until it succeeds. A daemon that
# exited meanwhile ends the wait at once.
wait_for() {
	local what=$1 limit=$2 deadline name
	shift 2
	deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		for name in "$W"/pids/*; do
			kill -0 "$(cat "$name")" 2>/dev/null || die "${name##*/} exited while waiting for $what"
		done
		[ $SECONDS -lt $deadline ] || die "timed out after ${limit}s waiting for $what"
		sleep 0.2
	done
}

start_runtime() { start containerd containerd --config "$W/containerd/config.toml"; }

# stop_runtime stops containerd alone, as an outage would: its shims and
# containers keep running, and start_runtime brings it back to them.
stop_runtime() {
	local pid
	pid=$(cat "$W/pids/containerd")
	kill -TERM "$pid"
	for _ in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	die "containerd ($pid) did not stop"
}

# containerd_config writes containerd's config. Root,
# state, runc's state and the CNI config are all under $W; only the shim
# sockets (/run/containerd/s, fixed in containerd 1.6) are not.
containerd_config() {
	local dir=$W/containerd
	mkdir -p "$dir" "$W/cni" "$(dirname "$CRI_SOCKET")"
	# loopback only: enough for the node to be Ready; test pods use hostNetwork
	cat >"$W/cni/10-loopback.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "oomtrace-e2e", "plugins": [{"type": "loopback"}]}
EOF
	cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$CRI_SOCKET"
[ttrpc]
  address = "$CRI_SOCKET.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = "$dir/runtime-v1"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # This machine withholds lowering oom_score_adj; without it every sandbox
  # fails in runc.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$dir/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$(cni_bin_dir)"
    conf_dir = "$W/cni"
EOF
}

cni_bin_dir() {
	local d
	for d in /usr/lib/cni /opt/cni/bin; do
		[ ! -x "$d/loopback" ] || {
			echo "$d"
			return
		}
	done
	die "no CNI loopback plugin (package containernetworking-plugins)"
}

kubelet_config() {
	cat >"$W/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CRI_SOCKET
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
cgroupsPerQOS: true
failSwapOn: false
failCgroupV1: false
makeIPTablesUtilChains: false
podLogsDir: $W/pod-logs
volumePluginDir: $W/volume-plugins
# imported images have no registry to come back from
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%}
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
rotateCertificates: false
serverTLSBootstrap: false
featureGates: {${FEATURE_GATES/=/: }}
EOF
	echo "$W/kubelet.yaml"
}

# import_pause builds the sandbox image (a static program that sleeps and
# reaps) and imports it: containerd finds sandbox_image locally.
import_pause() {
	mkdir -p "$W/images"
	(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$W/images/pause" ./scripts/e2e/pause)
	mkimage -o "$W/images/pause.tar" -tag "$PAUSE_IMAGE" -arch "$(go env GOARCH)" -entrypoint /pause "$W/images/pause=/pause"
	ctr -a "$CRI_SOCKET" -n k8s.io images import "$W/images/pause.tar" >/dev/null
}

# mkimage runs the project's image builder (scripts/mkimage), or
# $OOMTRACE_E2E_MKIMAGE when set (a binary built already).
mkimage() {
	if [ -n "${OOMTRACE_E2E_MKIMAGE:-}" ]; then
		"$OOMTRACE_E2E_MKIMAGE" "$@"
	else
		(cd "$REPO" && go run ./scripts/mkimage "$@")
	fi
}

dump_logs() {
	local f
	[ -n "${W:-}" ] && [ -d "$W/logs" ] || return 0
	for f in "$W"/logs/*.log; do
		echo "----- ${f##*/} (last 40 lines)" >&2
		tail -n 40 "$f" >&2
	done
}

env_vars() {
	load
	cat <<EOF
export KUBECONFIG=$WORK/admin.kubeconfig
export KUBECACHEDIR=$WORK/kubectl-cache
export OOMTRACE_E2E_DIR=$WORK
export OOMTRACE_E2E_KUBECTL=$K8S_BIN/kubectl
export OOMTRACE_E2E_CRI_SOCKET=$CRI_SOCKET
export OOMTRACE_E2E_NODE=$NODE
export OOMTRACE_E2E_API_HOST=127.0.0.1
export OOMTRACE_E2E_API_PORT=$API_PORT
export OOMTRACE_E2E_CGROUP_ROOT=/$CGROUP_ROOT
export OOMTRACE_E2E_LOGS=$WORK/logs
export PATH=$K8S_BIN:\$PATH
EOF
}

# load reads the state of the cluster that is up.
load() {
	[ -f "$STATE/state" ] || die "no cluster: run $0 up"
	# shellcheck disable=SC1091
	. "$STATE/state"
	W=$WORK
}

case ${1:-} in
deps) deps ;;
runtime-stop) load && stop_runtime ;;
runtime-start) load && start_runtime && wait_for containerd 30 ctr -a "$CRI_SOCKET" version ;;
up) up ;;
down) down ;;
env) env_vars ;;
logs) load && dump_logs ;;
*)
	echo "usage: $0 deps|up|down|env|logs|runtime-stop|runtime-start" >&2
	exit 2
	;;
esac
