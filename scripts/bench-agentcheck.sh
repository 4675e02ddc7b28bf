#!/bin/sh
# Compares agentcheck with a clustercheck-style shell script forked by socat
# for every check, on one throwaway MariaDB, and prints checks/s, mean and
# p99 latency for both, and the MySQL polls per interval agentcheck caused
# (counted on the server's own Connections and Com_select counters).
# Needs mariadbd, the mysql client and socat. Figures are printed, never
# asserted. Usage: scripts/bench-agentcheck.sh [SECONDS] [CLIENTS]
set -eu
cd "$(dirname "$0")/.."
VIPGUARD_BENCH=1 VIPGUARD_BENCH_SECONDS=${1:-5} VIPGUARD_BENCH_CLIENTS=${2:-4} \
	go test -count=1 -run '^TestBenchCompare$' -v ./internal/agent 2>&1 |
	grep -v 'level=' | grep -E 'bench|PASS|FAIL|SKIP|ok|---'
