#!/bin/sh
# Runs every fuzz target of the module for FUZZTIME each (make torture).
# Targets are found by their `func FuzzXxx` lines, so new ones run
# without editing this script. New crashers land in the package's
# testdata/fuzz/FuzzXxx/ and fail the run.
set -eu
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-1m}
cd "$(dirname "$0")/../.."
targets=$(grep -rl --include='*_test.go' '^func Fuzz' . | sort)
[ -n "$targets" ] || { echo "fuzz.sh: no fuzz targets found" >&2; exit 1; }
n=0
for file in $targets; do
	dir=$(dirname "$file")
	for f in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$file"); do
		echo "== fuzz $dir $f for $FUZZTIME"
		CGO_ENABLED=0 $GO test -run '^$' -fuzz "^$f\$" -fuzztime "$FUZZTIME" -parallel 2 "./$dir"
		n=$((n + 1))
	done
done
echo "fuzz.sh: $n targets ran for $FUZZTIME each, no crasher"
