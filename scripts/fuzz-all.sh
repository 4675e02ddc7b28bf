#!/bin/sh
# Runs every Fuzz* target in the module for a fixed time each ($1, e.g. 10s).
set -eu
t=${1:-10s}
n=0
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "fuzz: $pkg $f for $t"
		go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log; exit 1; }
		tail -n 1 /tmp/fuzz.$$.log
		n=$((n + 1))
	done
done
rm -f /tmp/fuzz.$$.log
echo "fuzz: $n passed, 0 failed"
