#!/bin/sh
# Compares agentcheck (bin/agentcheck serve, its own process) with a
# clustercheck-style shell script forked by socat for every check, on one
# throwaway MariaDB, and prints checks/s, latency percentiles and CPU per
# check for both, latency at fixed rates, the MySQL polls per interval
# agentcheck caused (the server's own counters), and, when nginx is
# installed, nginx answering a fixed string as this machine's ceiling.
# Needs mariadbd, the mysql client and socat. Figures are printed, never
# asserted. Usage: scripts/bench-agentcheck.sh [SECONDS] [CLIENTS] [RATES]
set -eu
cd "$(dirname "$0")/.."
make -s build
exec go run ./tools/benchagent -seconds "${1:-5}" -clients "${2:-4}" -rates "${3:-1000,5000}"
