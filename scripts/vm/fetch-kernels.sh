#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# fetch-kernels.sh: download Debian cloud kernels for the qemu test harness
# (internal/vmtest) into a cache dir, without touching the system's apt state.
#
# Usage: fetch-kernels.sh [--headers] [--arch amd64|arm64] [5.10|6.1|6.12|newest ...]
#   (default: amd64, the three series and the newest; --arch may be given
#   more than once)
#
# Layout, under ${OOMTRACE_VM_CACHE:-/var/cache/oomtrace-vm}:
#   kernels/<series>/vmlinuz    the kernel image (amd64; kernels/<series>-arm64/
#                               for arm64, and so on)
#   kernels/<series>/config     its build config
#   kernels/<series>/version    the exact release, e.g. 6.1.0-37-cloud-amd64
#   kernels/<series>/headers    (--headers) a kbuild tree for out-of-tree modules:
#                               make -C kernels/<series>/headers M=$PWD modules
#                               (for arm64 with ARCH=arm64 and a cross compiler;
#                               its kbuild tools are the host's architecture)
#   busybox/<arch>/busybox      a static busybox for the guest's initramfs, for
#                               each architecture other than the host's
#   apt/<suite>[-<arch>]/       the private apt sources list and package lists
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
#   newest                    the highest cloud kernel in any of
#                             $OOMTRACE_VM_NEWEST_SUITES (default
#                             trixie-backports forky sid): so a kernel newer than
#                             any release's catches CO-RE relocations that break.
#                             Cached like the others: delete kernels/newest to
#                             look again.
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
NEWEST_SUITES=${OOMTRACE_VM_NEWEST_SUITES:-trixie-backports forky sid}
HOST_ARCH=$(dpkg --print-architecture)
# ARCH is the architecture being fetched (--arch).
ARCH=amd64

usage() {
	echo "usage: $0 [--headers] [--arch amd64|arm64] [5.10|6.1|6.12|newest ...]" >&2
	exit 2
}

log() { echo "fetch-kernels: $*" >&2; }
die() {
	echo "fetch-kernels: $*" >&2
	exit 1
}

# kernel_dir is where a series of $ARCH is cached: amd64 has the plain
# series name (the layout before other architectures), the others a suffix.
kernel_dir() {
	if [[ $ARCH == amd64 ]]; then
		echo "$CACHE/kernels/$1"
	else
		echo "$CACHE/kernels/$1-$ARCH"
	fi
}

suite_for() {
	case $1 in
	5.10) echo bullseye ;;
	6.1) echo bookworm ;;
	6.12) echo "${OOMTRACE_VM_SUITE_6_12:-bookworm-backports}" ;;
	newest) cat "$(kernel_dir newest)/suite" 2>/dev/null || return 1 ;;
	*) return 1 ;;
	esac
}

# Package name of the image, as an extended regex; the release is the part
# between "linux-image-" and the end. 6.1 excludes bullseye's 6.1.0-0.deb11.N
# backports; 6.12 and newer names look like 6.12.38+deb12-cloud-amd64.
image_regex() {
	case $1 in
	5.10) echo "^linux-image-5\.10\.0-[0-9]+-cloud-$ARCH\$" ;;
	6.1) echo "^linux-image-6\.1\.0-[0-9]+-cloud-$ARCH\$" ;;
	6.12) echo "^linux-image-6\.12\.[0-9]+\+deb[0-9.]+-cloud-$ARCH\$" ;;
	newest) echo "^linux-image-[0-9]+\.[0-9]+\.[0-9]+\+deb[0-9.]+-cloud-$ARCH\$" ;;
	esac
}

# APT holds the options that point apt at the private state of one suite.
# A foreign architecture's lists also hold the host's: the kbuild tools that
# build its modules run here.
APT=()
declare -A UPDATED=()
apt_setup() {
	local suite=$1 dir=$CACHE/apt/$1 uri arches=$HOST_ARCH
	if [[ $ARCH != "$HOST_ARCH" ]]; then
		dir=$CACHE/apt/$1-$ARCH
		arches=$HOST_ARCH,$ARCH
	fi
	uri=$(debian_mirror) || die "cannot find the Debian archive to fetch kernels from"
	private_apt "$dir"
	echo "deb [arch=$arches signed-by=$KEYRING] $uri $suite main" >"$dir/sources.list"
	APT=("${PRIVATE_APT[@]}" -o "APT::Architectures::=$HOST_ARCH")
	[[ $ARCH == "$HOST_ARCH" ]] || APT+=(-o "APT::Architectures::=$ARCH")
	# Refresh the lists at most once per run and list dir.
	if [[ -z ${UPDATED[$dir]:-} ]]; then
		log "updating package lists for $suite ($arches)"
		apt-get "${APT[@]}" -qq update >&2 || die "apt-get update for $suite failed"
		UPDATED[$dir]=1
	fi
}

# newest_image prints the release of the newest cloud image of a series in
# the suite apt_setup chose, or nothing.
newest_image() {
	local series=$1
	apt-cache "${APT[@]}" search --names-only "$(image_regex "$series")" | awk '{print $1}' |
		sort -V | tail -n1 | sed 's/^linux-image-//'
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
	local series=$1 dir release tmp suite
	dir=$(kernel_dir "$series")
	if [[ -s $dir/vmlinuz && -s $dir/version ]]; then
		log "$series ($ARCH): $(cat "$dir/version") already cached"
		return
	fi
	if [[ $series == newest ]]; then
		# The highest release across the suites, and the suite that has it.
		local s r best="" best_suite=""
		for s in $NEWEST_SUITES; do
			apt_setup "$s"
			r=$(newest_image newest)
			log "newest ($ARCH): $s offers ${r:-no cloud kernel}"
			if [[ -n $r ]] && [[ -z $best || $(printf '%s\n%s\n' "$best" "$r" | sort -V | tail -n1) == "$r" && $r != "$best" ]]; then
				best=$r best_suite=$s
			fi
		done
		[[ -n $best ]] || die "no cloud kernel for $ARCH in $NEWEST_SUITES"
		suite=$best_suite release=$best
		apt_setup "$suite"
	else
		suite=$(suite_for "$series")
		apt_setup "$suite"
		release=$(newest_image "$series")
		[[ -n $release ]] || die "no linux-image package for $series ($ARCH) in suite $suite"
	fi
	# From 7.x, linux-image-<release> is empty and depends on the packages
	# that hold the image (linux-binary-) and its config (linux-base-).
	local pkgs=("linux-image-$release:$ARCH") d deb
	for d in $(apt-cache "${APT[@]}" depends "linux-image-$release:$ARCH" | awk '$1 == "Depends:" {print $2}'); do
		d=${d#<} d=${d%>} d=${d%%:*}
		case $d in linux-binary-"$release" | linux-base-"$release") pkgs+=("$d:$ARCH") ;; esac
	done
	log "$series ($ARCH): fetching ${pkgs[*]} from $suite"
	tmp=$(download "${pkgs[@]}")
	for deb in "$tmp"/*.deb; do
		dpkg -x "$deb" "$tmp/root"
	done
	mkdir -p "$dir"
	# boot/vmlinuz-<release> before 7.x; usr/lib/modules/<release>/vmlinuz since.
	local boot=$tmp/root/boot/ suffix=-$release
	if [[ ! -e $boot/vmlinuz$suffix ]]; then
		boot=$tmp/root/usr/lib/modules/$release/ suffix=
	fi
	[[ -e $boot/vmlinuz$suffix ]] || die "$series ($ARCH): no vmlinuz in ${pkgs[*]}"
	cp "$boot/vmlinuz$suffix" "$dir/vmlinuz.new"
	cp "$boot/config$suffix" "$dir/config"
	rm -rf "$tmp"
	echo "$suite" >"$dir/suite"
	# version is written last: its presence means the series is complete.
	mv "$dir/vmlinuz.new" "$dir/vmlinuz"
	echo "$release" >"$dir/version"
}

# fetch_headers unpacks linux-headers-<release> with its -common and
# linux-kbuild dependencies into kernels/<series>/headers-root and links
# kernels/<series>/headers to the arch-specific tree. Debian's trees refer to
# each other by absolute /usr/src and /usr/lib paths, which are rewritten to
# point into the cache. linux-kbuild holds programs (fixdep, modpost) that run
# on the build machine: it is the host's architecture's package.
fetch_headers() {
	local series=$1 dir release root tmp deps pkgs
	dir=$(kernel_dir "$series")
	release=$(cat "$dir/version")
	root=$dir/headers-root
	if [[ -f $root/.complete ]]; then
		log "$series ($ARCH): headers for $release already cached"
		return
	fi
	apt_setup "$(suite_for "$series")"
	# The dependencies name the -common and linux-kbuild packages, whose names
	# differ between releases (linux-kbuild-6.1 vs linux-kbuild-6.12.38+deb12).
	deps=$(apt-cache "${APT[@]}" depends "linux-headers-$release:$ARCH" | awk '$1 == "Depends:" {print $2}')
	pkgs=("linux-headers-$release:$ARCH")
	local d
	for d in $deps; do
		# A foreign architecture's view names them <pkg:arch>.
		d=${d#<} d=${d%>} d=${d%%:*}
		case $d in
		linux-headers-*-common*) pkgs+=("$d") ;;
		linux-kbuild-*) pkgs+=("$d:$HOST_ARCH") ;;
		esac
	done
	[[ ${#pkgs[@]} -ge 3 ]] || die "$series ($ARCH): unexpected dependencies of linux-headers-$release: $deps"
	log "$series ($ARCH): fetching ${pkgs[*]}"
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
	[[ -f $root/usr/src/linux-headers-$release/Makefile ]] || die "$series ($ARCH): no Makefile in linux-headers-$release"
	ln -sfn "headers-root/usr/src/linux-headers-$release" "$dir/headers"
	touch "$root/.complete"
}

# toolchain_hint says which compiler built the kernel and what this host
# lacks to build modules for it. Seen on a bookworm host: 6.1 and 6.12 (from
# bookworm-backports) were built with gcc-12 like the host's; 5.10 with
# gcc-10, which bookworm does not have, but `make CC=gcc-12` built a module
# that loaded; 6.12's kbuild runs pahole for module BTF.
toolchain_hint() {
	local series=$1 dir cc
	dir=$(kernel_dir "$series")
	cc=$(sed -n 's/^CONFIG_CC_VERSION_TEXT="\([^ ]*\) .*/\1/p' "$dir/config")
	if [[ -n $cc ]] && ! command -v "$cc" >/dev/null; then
		log "$series ($ARCH): the kernel was built with $cc, which is not on this host: make CC=gcc-12 built a module that loaded on 5.10, or install $cc"
	fi
	local cross=""
	[[ $ARCH == "$HOST_ARCH" ]] || cross=" ARCH=${ARCH/amd64/x86_64} CROSS_COMPILE=<gnu triplet>-"
	log "$series ($ARCH): build modules with: make -C $dir/headers M=\$PWD$cross modules"
}

# fetch_busybox unpacks Debian's busybox-static of $ARCH, from the host's own
# release, into busybox/<arch>/busybox. The host's architecture uses the
# installed package (make deps).
fetch_busybox() {
	local dir=$CACHE/busybox/$ARCH suite tmp
	[[ $ARCH != "$HOST_ARCH" ]] || return 0
	if [[ -x $dir/busybox ]]; then
		log "busybox ($ARCH): already cached"
		return
	fi
	suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[[ -n $suite ]] || die "no VERSION_CODENAME in /etc/os-release: cannot tell which release's busybox-static to fetch"
	apt_setup "$suite"
	log "busybox ($ARCH): fetching busybox-static from $suite"
	tmp=$(download "busybox-static:$ARCH")
	dpkg -x "$tmp"/busybox-static_*.deb "$tmp/root"
	mkdir -p "$dir"
	cp "$tmp/root/bin/busybox" "$dir/busybox.new"
	rm -rf "$tmp"
	mv "$dir/busybox.new" "$dir/busybox"
}

headers=false
series=()
arches=()
while [[ $# -gt 0 ]]; do
	case $1 in
	--headers) headers=true ;;
	--arch)
		[[ $# -ge 2 ]] || usage
		case $2 in amd64 | arm64) arches+=("$2") ;; *) usage ;; esac
		shift
		;;
	-h | --help) usage ;;
	5.10 | 6.1 | 6.12 | newest) series+=("$1") ;;
	*) usage ;;
	esac
	shift
done
[[ ${#series[@]} -gt 0 ]] || series=(5.10 6.1 6.12 newest)
[[ ${#arches[@]} -gt 0 ]] || arches=(amd64)

command -v apt-get >/dev/null || die "apt-get not found: this script needs a Debian-like host"
[[ -r $KEYRING ]] || die "$KEYRING missing: apt-get install debian-archive-keyring"
mkdir -p "$CACHE/kernels" "$CACHE/apt"

for ARCH in "${arches[@]}"; do
	fetch_busybox
	for s in "${series[@]}"; do
		fetch_image "$s"
		if $headers; then
			fetch_headers "$s"
			toolchain_hint "$s"
		fi
		echo "$ARCH $s $(cat "$(kernel_dir "$s")/version") $(kernel_dir "$s")"
	done
done
