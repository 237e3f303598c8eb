#!/usr/bin/env bash
# Runs the NAT lab N times (root) and prints, per row, how many runs it
# passed: the lab's flake rate. Not part of `make test`: N full runs take
# N times a few minutes.
# Top-level tests count as rows too (a test without subtests is one).
# usage: natlab-repeat.sh N [go test -run pattern]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:?usage: natlab-repeat.sh N [pattern]}
pattern=${2:-.}
work=$(mktemp -d /tmp/natlab-repeat.XXXXXX)
trap 'rm -rf "$work"' EXIT
go test -race -c -o "$work/natlab.test" ./natlab/
for i in $(seq "$n"); do
	start=$SECONDS
	(cd natlab && "$work/natlab.test" -test.count=1 -test.timeout 15m -test.v -test.run "$pattern" >"$work/run-$i.log" 2>&1) || true
	printf 'run %d: %d rows passed, %d failed (%d s)\n' "$i" \
		"$(grep -c -- '^    --- PASS: ' "$work/run-$i.log" || true)" \
		"$(grep -c -- '^    --- FAIL: ' "$work/run-$i.log" || true)" $((SECONDS - start))
done
echo
echo "passed/runs  row"
cat "$work"/run-*.log | sed -n 's/^ *--- \(PASS\|FAIL\): \([^ ]*\) .*/\1 \2/p' | sort -k2 | awk '
	{ runs[$2]++; if ($1 == "PASS") pass[$2]++ }
	END { for (r in runs) printf "%2d/%-2d      %s%s\n", pass[r], runs[r], r, (pass[r] < runs[r] ? "   FLAKY" : "") }' | sort -k2
failed=$(cat "$work"/run-*.log | grep -c -- '^ *--- FAIL: ' || true)
[ "$failed" -eq 0 ]
