# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
#
# debian-apt.sh: sourced by the scripts that fetch Debian packages from
# suites other than the system's own (kernels for the VMs, kernel BTF for
# headers/). They use apt with a private sources list and lists dir, so the
# system's apt state is left as it is, and the archive's URI is read from the
# system's own sources, so no archive host is ever written into the repository.

# debian_mirror prints the URI of the main Debian archive this system's apt
# uses (deb822 sources first, then the one-line format), skipping the security
# archive, which holds only the -security suites.
debian_mirror() {
	local uri=""
	if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
		uri=$(awk '
			function flush() {
				if (uris != "" && enabled && suites !~ /-security/ && found == "") {
					split(uris, u, /[ \t]+/); found = u[1]
				}
				uris = ""; suites = ""; enabled = 1
			}
			BEGIN { enabled = 1 }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]*#/ { next }
			tolower($1) == "uris:" { $1 = ""; sub(/^[ \t]+/, ""); uris = $0 }
			tolower($1) == "suites:" { $1 = ""; suites = $0 }
			tolower($1) == "enabled:" && tolower($2) == "no" { enabled = 0 }
			END { flush(); print found }
		' /etc/apt/sources.list.d/debian.sources)
	fi
	if [[ -z $uri && -r /etc/apt/sources.list ]]; then
		uri=$(awk '
			$1 != "deb" { next }
			{ i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } }
			$(i+1) !~ /-security/ { print $i; exit }
		' /etc/apt/sources.list)
	fi
	if [[ -z $uri ]]; then
		echo "no Debian archive URI in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2
		return 1
	fi
	echo "${uri%/}"
}

# private_apt DIR sets PRIVATE_APT to the apt options that use
# DIR/sources.list and DIR/lists only, with no package cache.
private_apt() {
	local dir=$1
	mkdir -p "$dir/lists/partial"
	PRIVATE_APT=(
		-o "Dir::Etc::SourceList=$dir/sources.list"
		-o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$dir/lists"
		-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
		-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
		-o Acquire::Languages=none
	)
	# apt-get download would otherwise drop to the _apt user, which cannot
	# write into a root-owned dir.
	if [[ $(id -u) == 0 ]]; then
		PRIVATE_APT+=(-o APT::Sandbox::User=root)
	fi
}
