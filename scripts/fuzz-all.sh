#!/bin/sh
# Runs every Fuzz* target in the module for a fixed time each ($1, e.g. 10s).
#
# Go before 1.27 can fail a target with a bare "context deadline exceeded"
# right as -fuzztime ends, with no failing input (golang/go#75804, a race in
# the fuzz coordinator). Such a run, and only such a run, is retried once;
# anything else that fails (a failing input written, a panic, a t.Error) fails
# at once, and so does a second boundary failure.
set -eu
t=${1:-10s}
n=0
log=/tmp/fuzz.$$.log
trap 'rm -f "$log"' EXIT

# boundary_flake LOG: the only failure is the coordinator's deadline race.
boundary_flake() {
	grep -q 'context deadline exceeded' "$1" &&
		! grep -q -e 'Failing input written' -e 'panic:' -e '_test.go:[0-9]' "$1"
}

for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //'); do
		echo "fuzz: $pkg $f for $t"
		if ! go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >"$log" 2>&1; then
			if ! boundary_flake "$log"; then
				cat "$log"
				exit 1
			fi
			echo "fuzz: $f ended on the -fuzztime boundary race (golang/go#75804, no failing input); once more"
			go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >"$log" 2>&1 || { cat "$log"; exit 1; }
		fi
		tail -n 1 "$log"
		n=$((n + 1))
	done
done
echo "fuzz: $n passed, 0 failed"
