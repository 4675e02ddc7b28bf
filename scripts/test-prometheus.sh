#!/bin/sh
# Checks the Prometheus rules shipped in examples/prometheus: promtool's
# syntax and lint check, then the rules' unit tests, and that every alert
# has tests. Needs promtool (Debian package prometheus; the server is
# never started). Any failure fails the build.
set -eu
cd "$(dirname "$0")/../examples/prometheus"
command -v promtool >/dev/null 2>&1 || {
	echo "test-prometheus: error: promtool not found (apt-get install prometheus, or make deps)" >&2
	exit 1
}
promtool check rules vipguard-alerts.yml
promtool test rules vipguard-alerts.test.yml
# An alert without a firing and a quiet case is untested: each name must
# come up at least twice in the tests.
missing=""
for a in $(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' vipguard-alerts.yml | sort -u); do
	n=$(grep -c "alertname: *$a\$" vipguard-alerts.test.yml || true)
	[ "$n" -ge 2 ] || missing="$missing $a($n)"
done
if [ -n "$missing" ]; then
	echo "test-prometheus: error: alerts with fewer than two test cases:$missing" >&2
	exit 1
fi
# The dashboard: valid JSON, and each of its queries valid PromQL (promtool
# evaluates every one, with $pair as "match all", over an empty database).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - ../grafana/vipguard-dashboard.json "$tmp/dashboard.test.yml" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exprs = [a["expr"] for a in d["annotations"]["list"] if "expr" in a]
exprs += [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
if len(exprs) < 5:
    sys.exit("test-prometheus: error: dashboard has only %d queries" % len(exprs))
with open(sys.argv[2], "w") as f:
    f.write("tests:\n  - input_series: []\n    promql_expr_test:\n")
    for e in exprs:
        f.write("      - expr: %s\n        eval_time: 1m\n        exp_samples: []\n" % json.dumps(e.replace("$pair", ".*")))
PY
promtool test rules "$tmp/dashboard.test.yml" >"$tmp/out" 2>&1 || {
	cat "$tmp/out" >&2
	echo "test-prometheus: error: a query of examples/grafana/vipguard-dashboard.json does not evaluate" >&2
	exit 1
}
echo "test-prometheus: rules, rule tests and dashboard ok"
