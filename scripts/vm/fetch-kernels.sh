#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# fetch-kernels.sh: download Debian cloud kernels for the qemu test harness
# (internal/vmtest) into a cache dir, without touching the system's apt state.
#
# Usage: fetch-kernels.sh [--headers] [5.10|6.1|6.12 ...]   (default: all three)
#
# Layout, under ${OOMTRACE_VM_CACHE:-/var/cache/oomtrace-vm}:
#   kernels/<series>/vmlinuz    the kernel image
#   kernels/<series>/config     its build config
#   kernels/<series>/version    the exact release, e.g. 6.1.0-37-cloud-amd64
#   kernels/<series>/headers    (--headers) a kbuild tree for out-of-tree modules:
#                               make -C kernels/<series>/headers M=$PWD modules
#   apt/<suite>/                the private apt sources list and package lists
#
# Which suite each series comes from, and why:
#   5.10  bullseye            (its last point release, 5.10.223, which still has
#                              the old oom:mark_victim(int pid) format; the
#                              newer LTS builds in bullseye-security have the
#                              full one, like 6.1 and 6.12, so the matrix would
#                              lose its only old-format kernel)
#   6.1   bookworm
#   6.12  bookworm-backports  (built with gcc-12 and kbuild tools linked against
#                              bookworm's glibc, so --headers works on a bookworm
#                              host; trixie's 6.12 needs gcc-14).
#                              Override: OOMTRACE_VM_SUITE_6_12=trixie
#
# The mirror is never named here: the URI is read from the system's apt sources
# at run time, and only the suite names differ. apt runs with its own source
# list, lists dir and no package cache, so /var/lib/apt/lists is left as it is.
# Nothing is installed on the host: packages are fetched with `apt-get download`
# and unpacked with `dpkg -x` (the 6.12 headers package depends on the image
# package, so `apt-get install` would put a kernel into /boot).
#
# Idempotent: a series whose files are already cached is skipped. Delete
# kernels/<series> to fetch the newest build again.
set -euo pipefail

# shellcheck source=../debian-apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/../debian-apt.sh"

CACHE=${OOMTRACE_VM_CACHE:-/var/cache/oomtrace-vm}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

usage() {
	echo "usage: $0 [--headers] [5.10|6.1|6.12 ...]" >&2
	exit 2
}

log() { echo "fetch-kernels: $*" >&2; }
die() {
	echo "fetch-kernels: $*" >&2
	exit 1
}

suite_for() {
	case $1 in
	5.10) echo bullseye ;;
	6.1) echo bookworm ;;
	6.12) echo "${OOMTRACE_VM_SUITE_6_12:-bookworm-backports}" ;;
	*) return 1 ;;
	esac
}

# Package name of the image, as an extended regex; the release is the part
# between "linux-image-" and the end. 6.1 excludes bullseye's 6.1.0-0.deb11.N
# backports; 6.12 names look like 6.12.38+deb12-cloud-amd64.
image_regex() {
	case $1 in
	5.10) echo '^linux-image-5\.10\.0-[0-9]+-cloud-amd64$' ;;
	6.1) echo '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' ;;
	6.12) echo '^linux-image-6\.12\.[0-9]+\+deb[0-9.]+-cloud-amd64$' ;;
	esac
}

# APT holds the options that point apt at the private state of one suite.
APT=()
declare -A UPDATED=()
apt_setup() {
	local suite=$1 dir=$CACHE/apt/$1 uri
	uri=$(debian_mirror) || die "cannot find the Debian archive to fetch kernels from"
	private_apt "$dir"
	echo "deb [signed-by=$KEYRING] $uri $suite main" >"$dir/sources.list"
	APT=("${PRIVATE_APT[@]}")
	# Refresh the lists at most once per run and suite.
	if [[ -z ${UPDATED[$suite]:-} ]]; then
		log "updating package lists for $suite"
		apt-get "${APT[@]}" -qq update >&2 || die "apt-get update for $suite failed"
		UPDATED[$suite]=1
	fi
}

# newest_image prints the release of the newest cloud image of a series.
newest_image() {
	local series=$1 names
	names=$(apt-cache "${APT[@]}" search --names-only "$(image_regex "$series")" | awk '{print $1}')
	[[ -n $names ]] || die "no linux-image package for $series in suite $(suite_for "$series")"
	sort -V <<<"$names" | tail -n1 | sed 's/^linux-image-//'
}

# download fetches packages into a fresh temp dir and prints its path.
download() {
	local tmp
	tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
	(cd "$tmp" && apt-get "${APT[@]}" -qq download "$@" >&2) || {
		rm -rf "$tmp"
		die "apt-get download $* failed"
	}
	echo "$tmp"
}

fetch_image() {
	local series=$1 dir=$CACHE/kernels/$1 release tmp
	if [[ -s $dir/vmlinuz && -s $dir/version ]]; then
		log "$series: $(cat "$dir/version") already cached"
		return
	fi
	apt_setup "$(suite_for "$series")"
	release=$(newest_image "$series")
	log "$series: fetching linux-image-$release"
	tmp=$(download "linux-image-$release")
	dpkg -x "$tmp"/linux-image-*.deb "$tmp/root"
	mkdir -p "$dir"
	cp "$tmp/root/boot/vmlinuz-$release" "$dir/vmlinuz.new"
	cp "$tmp/root/boot/config-$release" "$dir/config"
	rm -rf "$tmp"
	# version is written last: its presence means the series is complete.
	mv "$dir/vmlinuz.new" "$dir/vmlinuz"
	echo "$release" >"$dir/version"
}

# fetch_headers unpacks linux-headers-<release> with its -common and
# linux-kbuild dependencies into kernels/<series>/headers-root and links
# kernels/<series>/headers to the arch-specific tree. Debian's trees refer to
# each other by absolute /usr/src and /usr/lib paths, which are rewritten to
# point into the cache.
fetch_headers() {
	local series=$1 dir=$CACHE/kernels/$1 release root tmp deps pkgs
	release=$(cat "$dir/version")
	root=$dir/headers-root
	if [[ -f $root/.complete ]]; then
		log "$series: headers for $release already cached"
		return
	fi
	apt_setup "$(suite_for "$series")"
	# The dependencies name the -common and linux-kbuild packages, whose names
	# differ between releases (linux-kbuild-6.1 vs linux-kbuild-6.12.38+deb12).
	deps=$(apt-cache "${APT[@]}" depends "linux-headers-$release" | awk '$1 == "Depends:" {print $2}')
	pkgs=("linux-headers-$release")
	local d
	for d in $deps; do
		case $d in
		linux-headers-*-common* | linux-kbuild-*) pkgs+=("$d") ;;
		esac
	done
	[[ ${#pkgs[@]} -ge 3 ]] || die "$series: unexpected dependencies of linux-headers-$release: $deps"
	log "$series: fetching ${pkgs[*]}"
	tmp=$(download "${pkgs[@]}")
	rm -rf "$root"
	mkdir -p "$root"
	local deb
	for deb in "$tmp"/*.deb; do
		dpkg -x "$deb" "$root"
	done
	rm -rf "$tmp"
	# Rewrite absolute references (Makefile includes, symlinks) into the cache.
	local f target
	grep -rlsI --include=Makefile -e '/usr/src/' -e '/usr/lib/linux-kbuild' "$root/usr/src" |
		while read -r f; do
			sed -i -e "s#\([^/a-zA-Z0-9_.-]\|^\)/usr/src/#\1$root/usr/src/#g" \
				-e "s#\([^/a-zA-Z0-9_.-]\|^\)/usr/lib/linux-kbuild#\1$root/usr/lib/linux-kbuild#g" "$f"
		done
	find "$root" -type l -lname '/*' | while read -r f; do
		target=$(readlink "$f")
		ln -sfn "$root$target" "$f"
	done
	[[ -f $root/usr/src/linux-headers-$release/Makefile ]] || die "$series: no Makefile in linux-headers-$release"
	ln -sfn "headers-root/usr/src/linux-headers-$release" "$dir/headers"
	touch "$root/.complete"
}

# toolchain_hint says which compiler built the kernel and what this host
# lacks to build modules for it. Seen on a bookworm host: 6.1 and 6.12 (from
# bookworm-backports) were built with gcc-12 like the host's; 5.10 with
# gcc-10, which bookworm does not have, but `make CC=gcc-12` built a module
# that loaded; 6.12's kbuild runs pahole for module BTF.
toolchain_hint() {
	local series=$1 dir=$CACHE/kernels/$1 cc
	cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\([^ ]*\) .*/\1/p' "$dir/config")
	if [[ -n $cc ]] && ! command -v "$cc" >/dev/null; then
		log "$series: the kernel was built with $cc, which is not on this host: make CC=gcc-12 built a module that loaded on 5.10, or install $cc"
	fi
	if [[ $series == 6.12 ]] && ! command -v pahole >/dev/null; then
		log "$series: pahole not found: apt-get install pahole, or add CONFIG_DEBUG_INFO_BTF_MODULES= to the make command line"
	fi
	log "$series: build modules with: make -C $dir/headers M=\$PWD modules"
}

headers=false
series=()
for arg in "$@"; do
	case $arg in
	--headers) headers=true ;;
	-h | --help) usage ;;
	5.10 | 6.1 | 6.12) series+=("$arg") ;;
	*) usage ;;
	esac
done
[[ ${#series[@]} -gt 0 ]] || series=(5.10 6.1 6.12)

command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian-like host"
[[ -r $KEYRING ]] || die "$KEYRING missing: apt-get install debian-archive-keyring"
mkdir -p "$CACHE/kernels" "$CACHE/apt"

for s in "${series[@]}"; do
	fetch_image "$s"
	if $headers; then
		fetch_headers "$s"
		toolchain_hint "$s"
	fi
	echo "$s $(cat "$CACHE/kernels/$s/version") $CACHE/kernels/$s"
done
