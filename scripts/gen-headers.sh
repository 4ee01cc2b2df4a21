#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# gen-headers.sh regenerates headers/: one vmlinux.h per target architecture,
# dumped from the BTF inside a Debian cloud kernel package, and the libbpf
# headers of the installed libbpf-dev. It records where each file came from in
# headers/SOURCES. `make headers` runs it; `make generate` then rebuilds the
# objects. Rarely needed: the programs are relocated to the running kernel
# (CO-RE), so these headers only have to declare what the C uses.
#
# Usage: scripts/gen-headers.sh
#   OOMTRACE_HEADERS_KERNEL  Debian kernel release (default below); the same
#                            release for every architecture
#   OOMTRACE_HEADERS_SUITE   the Debian suite that has it
#
# The kernel is 6.18 because __parent (kernfs_node) and the per-CPU mm
# counters are the field names the C reads first; the ___old flavours in
# bpf/memcg.h describe the layouts of older kernels.
#
# The archive is never named here: its URI is read from the system's apt
# sources (scripts/debian-apt.sh). apt runs with a private sources list and
# lists dir; nothing is installed: `apt-get download`, then `dpkg -x`. The BTF
# is cut out of boot/vmlinuz by scripts/kernelbtf, so the large -dbg package
# is not needed.
set -euo pipefail

RELEASE=${OOMTRACE_HEADERS_KERNEL:-6.18.15+deb13}
SUITE=${OOMTRACE_HEADERS_SUITE:-trixie-backports}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# Debian architecture → libbpf's __TARGET_ARCH_ name, the headers/ subdir.
declare -A ARCH_DIR=([amd64]=x86 [arm64]=arm64)

log() { echo "gen-headers: $*" >&2; }
die() {
	echo "gen-headers: $*" >&2
	exit 1
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=debian-apt.sh
source "$root/scripts/debian-apt.sh"
for tool in apt-get dpkg-deb bpftool go zstd; do
	command -v $tool >/dev/null || die "$tool not found (make deps installs what is missing)"
done
[[ -r $KEYRING ]] || die "$KEYRING missing: apt-get install debian-archive-keyring"
libbpf=$(dpkg-query -W -f '${Version}' libbpf-dev 2>/dev/null) || die "libbpf-dev is not installed: make deps"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/debs"
uri=$(debian_mirror) || die "cannot find the Debian archive to fetch kernels from"
arches=$(IFS=,; echo "${!ARCH_DIR[*]}")
echo "deb [arch=$arches signed-by=$KEYRING] $uri $SUITE main" >"$tmp/sources.list"
private_apt "$tmp"
apt=("${PRIVATE_APT[@]}")
for arch in "${!ARCH_DIR[@]}"; do
	apt+=(-o "APT::Architectures::=$arch")
done

log "updating package lists for $SUITE"
apt-get "${apt[@]}" -qq update >&2 || die "apt-get update for $SUITE failed"

sources=$tmp/SOURCES
{
	echo "# Where the files in headers/ come from. Written by scripts/gen-headers.sh: do not edit."
	echo "# vmlinux.h: bpftool btf dump of the BTF in the kernel package's boot/vmlinuz."
	echo "# bpftool: $(bpftool version | head -n1)"
	echo
} >"$sources"

for arch in $(printf '%s\n' "${!ARCH_DIR[@]}" | sort); do
	pkg=linux-image-$RELEASE-cloud-$arch
	log "fetching $pkg ($arch)"
	(cd "$tmp/debs" && apt-get "${apt[@]}" -qq download "$pkg:$arch" >&2) || die "apt-get download $pkg:$arch failed (not in $SUITE any more? set OOMTRACE_HEADERS_KERNEL)"
	deb=$(ls "$tmp/debs/${pkg}_"*"_$arch.deb")
	version=$(dpkg-deb -f "$deb" Version)
	sha=$(sha256sum "$deb" | cut -d' ' -f1)
	dpkg-deb -x "$deb" "$tmp/$arch"
	go -C "$root" run ./scripts/kernelbtf -o "$tmp/$arch.btf" "$tmp/$arch/boot/vmlinuz-$RELEASE-cloud-$arch"
	dir=$root/headers/${ARCH_DIR[$arch]}
	mkdir -p "$dir"
	bpftool btf dump file "$tmp/$arch.btf" format c >"$dir/vmlinux.h.new"
	mv "$dir/vmlinux.h.new" "$dir/vmlinux.h"
	printf '%-24s Debian %s %s (%s, %s), sha256 %s\n' \
		"${ARCH_DIR[$arch]}/vmlinux.h" "$pkg" "$version" "$SUITE" "$arch" "$sha" >>"$sources"
	rm -rf "${tmp:?}/$arch" "$deb"
done

for h in bpf_core_read.h bpf_helper_defs.h bpf_helpers.h bpf_tracing.h; do
	cp "/usr/include/bpf/$h" "$root/headers/$h"
	printf '%-24s Debian libbpf-dev %s (/usr/include/bpf)\n' "$h" "$libbpf" >>"$sources"
done
mv "$sources" "$root/headers/SOURCES"
log "wrote headers/ (see headers/SOURCES); now run make generate"
