#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every Go fuzz target of the module for a bounded time each (make
# fuzz). The targets are found, not listed: any func Fuzz* in a _test.go
# file under cmd/ or internal/ runs, so a new one cannot be left out. Their committed corpora
# (testdata/fuzz/FuzzX) also run as plain tests in go test.
#   FUZZTIME      how long each target runs (go test -fuzztime), default 15s
#   FUZZMINTIME   how long a new input's minimisation may take, default 5s
#                 (go's 60s would eat a short run's budget)
#   FUZZ_RUN      a regular expression narrowing the targets by name
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-15s}
FUZZMINTIME=${FUZZMINTIME:-5s}
FUZZ_RUN=${FUZZ_RUN:-.}

# Each "func FuzzX(f *testing.F)" of a _test.go file, as "pkg names...":
# read from the source, not by go test -list, which would link (and run
# the TestMain of) every test binary of the module.
targets=$(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\)' cmd internal |
	sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*).*#./\1 \2#' | sort |
	awk '$1 != pkg { if (pkg != "") print pkg names; pkg = $1; names = "" } { names = names " " $2 } END { if (pkg != "") print pkg names }')
if [ -z "$targets" ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
n=0
while read -r pkg names; do
	for name in $names; do
		[[ $name =~ $FUZZ_RUN ]] || continue
		echo "fuzz: $pkg $name for $FUZZTIME" >&2
		corpus="$pkg/testdata/fuzz/$name"
		before=$(ls "$corpus" 2>/dev/null || true)
		if ! "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINTIME" "$pkg" 2>&1 | tee "$log"; then
			# Go before 1.27 can fail a target at the end of -fuzztime with
			# a bare "context deadline exceeded" and no failing input: a
			# race in its fuzzing coordinator (golang/go#75804), seen here
			# on a loaded machine. That, and only that, is not a finding:
			# no new input in the corpus, and the corpus replays clean.
			if grep -qx '    context deadline exceeded' "$log" && [ "$(ls "$corpus" 2>/dev/null || true)" = "$before" ] &&
				"$GO" test -count=1 -run "^${name}\$" "$pkg" >&2; then
				echo "fuzz: $name: Go's coordinator ended the run with \"context deadline exceeded\" and no failing input (golang/go#75804); the corpus replays clean" >&2
			else
				exit 1
			fi
		fi
		n=$((n + 1))
	done
done <<< "$targets"
echo "fuzz: $n targets, $FUZZTIME each" >&2
