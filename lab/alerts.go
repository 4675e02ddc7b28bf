package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// What the alert rules in examples/prometheus would say about the lab: both
// nodes' agentcheck /metrics are scraped as Prometheus would, the samples
// written as a promtool unit test's input series, and promtool evaluates
// the shipped rules over them.

// AlertsJob is the scrape job the shipped rules expect.
const AlertsJob = "vipguard"

// Sample is one line of a /metrics body.
type Sample struct {
	Name   string
	Labels [][2]string // in the order scraped
	Value  float64
}

// Label returns the value of label k ("" when absent).
func (s Sample) Label(k string) string {
	for _, l := range s.Labels {
		if l[0] == k {
			return l[1]
		}
	}
	return ""
}

// NodeMetrics is one node's part of a scrape.
type NodeMetrics struct {
	Err     error // the scrape failed: Prometheus's up is 0
	Samples []Sample
}

// Value finds the sample name{labels...} (labels as "k", "v" pairs; others
// may be present).
func (n NodeMetrics) Value(name string, labels ...string) (float64, bool) {
next:
	for _, s := range n.Samples {
		if s.Name != name {
			continue
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if s.Label(labels[i]) != labels[i+1] {
				continue next
			}
		}
		return s.Value, true
	}
	return 0, false
}

// Scrape is one reading of both nodes.
type Scrape struct {
	At    time.Time
	Nodes map[string]NodeMetrics
}

// ScrapeView says where a scrape is made from.
type ScrapeView int

const (
	// FromProxy scrapes from the proxy host, as a Prometheus server
	// beside HAProxy would: a node cut off is a failed scrape.
	FromProxy ScrapeView = iota
	// FromSelf scrapes each node from its own namespace: what the node
	// says about itself even while nobody can reach it.
	FromSelf
)

// ScrapeMetrics reads a node's /metrics over HTTP from the view's host.
func (l *Lab) ScrapeMetrics(ctx context.Context, name string, view ScrapeView) (NodeMetrics, error) {
	from := "proxy"
	if view == FromSelf {
		from = name
	}
	url := fmt.Sprintf("http://%s/metrics", agentInstance(l.Nodes[name]))
	out, err := run(ctx, append(l.Net.Wrap(from), "curl", "-sS", "--fail", "--max-time", "2", url)...)
	if err != nil {
		return NodeMetrics{Err: err}, err
	}
	samples, err := ParseMetrics(string(out))
	if err != nil {
		return NodeMetrics{Err: err}, fmt.Errorf("%s /metrics: %w", name, err)
	}
	return NodeMetrics{Samples: samples}, nil
}

func agentInstance(n *Node) string { return fmt.Sprintf("%s:%d", n.Addr, AgentHTTPPort) }

// ParseMetrics reads the Prometheus text format as agentcheck writes it
// (no timestamps, label values escaped with \\, \" and \n).
func ParseMetrics(body string) ([]Sample, error) {
	var out []Sample
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n, line, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func parseSample(line string) (Sample, error) {
	var s Sample
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return s, errors.New("no metric name")
	}
	s.Name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			eq := strings.Index(line, `="`)
			if eq <= 0 {
				return s, errors.New("bad label")
			}
			k := strings.TrimPrefix(line[:eq], ",")
			line = line[eq+2:]
			var v strings.Builder
			for {
				if line == "" {
					return s, errors.New("unterminated label value")
				}
				c := line[0]
				line = line[1:]
				if c == '"' {
					break
				}
				if c == '\\' && line != "" {
					c, line = line[0], line[1:]
					if c == 'n' {
						c = '\n'
					}
				}
				v.WriteByte(c)
			}
			s.Labels = append(s.Labels, [2]string{k, v.String()})
			line = strings.TrimPrefix(line, ",")
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(line), 64)
	if err != nil {
		return s, err
	}
	s.Value = v
	return s, nil
}

// MetricsRecorder keeps the scrapes of a scenario in order.
type MetricsRecorder struct {
	L       *Lab
	View    ScrapeView
	Scrapes []Scrape
}

// Take scrapes both nodes at once and records the result. A failed scrape
// is recorded too (it is what Prometheus would see), and not an error.
func (r *MetricsRecorder) Take(ctx context.Context) Scrape {
	sc := Scrape{At: time.Now(), Nodes: map[string]NodeMetrics{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range []string{"db1", "db2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, _ := r.L.ScrapeMetrics(ctx, name, r.View)
			mu.Lock()
			sc.Nodes[name] = m
			mu.Unlock()
		}()
	}
	wg.Wait()
	r.Scrapes = append(r.Scrapes, sc)
	return sc
}

// Until takes a scrape every 500 ms until ok says so, within limit.
func (r *MetricsRecorder) Until(ctx context.Context, limit time.Duration, what string, ok func(Scrape) bool) error {
	deadline := time.Now().Add(limit)
	for {
		sc := r.Take(ctx)
		if ok(sc) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("metrics never showed %s within %s; last scrape:\n%s", what, limit, sc.Summary())
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

// Summary shows the series that say what a node is, for failure messages.
func (sc Scrape) Summary() string {
	var b strings.Builder
	for _, name := range []string{"db1", "db2"} {
		n := sc.Nodes[name]
		if n.Err != nil {
			fmt.Fprintf(&b, "  %s: scrape failed: %v\n", name, n.Err)
			continue
		}
		fmt.Fprintf(&b, "  %s:", name)
		for _, s := range n.Samples {
			if strings.HasPrefix(s.Name, "vipguard_role") || strings.HasPrefix(s.Name, "vipguard_notify") ||
				strings.HasPrefix(s.Name, "vipguard_replication_broken") || s.Name == "vipguard_agent_maintenance" ||
				(s.Name == "vipguard_agent_up" && s.Label("role") == "health") {
				fmt.Fprintf(&b, " %s%v=%g", s.Name, s.Labels, s.Value)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// AlertWant is what one alert must do over a scenario's scrapes.
type AlertWant struct {
	Alert string
	// Node restricts the alert to one node's instance ("" for any, or for
	// alerts about a pair).
	Node string
	Want AlertState
}

// AlertState is the expectation on an alert.
type AlertState int

const (
	// Fires: firing at the end of the hold.
	Fires AlertState = iota
	// Quiet: not firing at the end of the hold.
	Quiet
	// Never: neither pending nor firing at any evaluation.
	Never
)

// alertStep is the time a scrape stands for in the rule evaluation: a
// common scrape interval. Scrapes taken faster than that stretch the
// scenario in rule time, which only makes a pending alert likelier to
// fire: the stricter direction for the Never checks.
const alertStep = 15 * time.Second

// CheckAlerts evaluates the shipped rules with promtool over the recorded
// scrapes, the last one held for hold (a state that lasts), and checks
// each want. dir receives the test file (kept for a failure's
// diagnostics).
func (r *MetricsRecorder) CheckAlerts(ctx context.Context, dir string, hold time.Duration, wants []AlertWant) error {
	if len(r.Scrapes) == 0 {
		return errors.New("no scrapes recorded")
	}
	rules := filepath.Join(r.L.Root, "examples", "prometheus", "vipguard-alerts.yml")
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		return fmt.Errorf("promtool (Debian package prometheus): %w", err)
	}
	holdSteps := int(hold / alertStep)
	end := time.Duration(len(r.Scrapes)-1+holdSteps) * alertStep
	var b strings.Builder
	fmt.Fprintf(&b, "# promtool test rules: the lab's scrapes as input series\nrule_files:\n  - %s\nevaluation_interval: %s\ntests:\n  - interval: %s\n    input_series:\n",
		yamlQuote(rules), promDur(alertStep), promDur(alertStep))
	for _, s := range r.series(holdSteps) {
		fmt.Fprintf(&b, "      - series: %s\n        values: %s\n", yamlQuote(s.selector), yamlQuote(s.values))
	}
	b.WriteString("    promql_expr_test:\n")
	for _, w := range wants {
		sel := fmt.Sprintf("alertname=%q", w.Alert)
		if w.Node != "" {
			sel += fmt.Sprintf(",instance=%q", agentInstance(r.L.Nodes[w.Node]))
		}
		// ALERTS as written by the last evaluation: promtool leaves a
		// resolved alert's last sample visible for the lookback period.
		last := fmt.Sprintf(`timestamp(ALERTS{%s,alertstate="firing"}) > time() - %d`, sel, int(alertStep/time.Second))
		var expr string
		switch w.Want {
		case Fires:
			expr = fmt.Sprintf(`count(%s) > bool 0`, last)
		case Quiet:
			expr = fmt.Sprintf(`absent(%s)`, last)
		case Never:
			expr = fmt.Sprintf(`absent(max_over_time(ALERTS{%s}[%s]))`, sel, promDur(end+alertStep))
		}
		fmt.Fprintf(&b, "      - expr: %s\n        eval_time: %s\n        exp_samples:\n          - value: 1\n", yamlQuote(expr), promDur(end))
	}
	path := filepath.Join(dir, "lab-alerts.test.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, promtool, "test", "rules", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("promtool test rules %s: %w\n%s\nlast scrape:\n%s", path, err, out, r.Scrapes[len(r.Scrapes)-1].Summary())
	}
	return nil
}

type inputSeries struct{ selector, values string }

// series turns the scrapes into promtool input series: one per node and
// sample, "_" before it first appears, "stale" once it is gone (as
// Prometheus marks a series missing from a scrape, or a failed scrape),
// the last value held for hold more steps; plus up per node. Timestamps
// (…_timestamp_seconds) are moved into rule time, keeping their age at each
// scrape: rule time starts at 0 with the first scrape.
func (r *MetricsRecorder) series(hold int) []inputSeries {
	type key struct{ node, sel string }
	vals := map[key][]string{}
	var order []key
	for i, sc := range r.Scrapes {
		ruleNow := float64(time.Duration(i) * alertStep / time.Second)
		wall := float64(sc.At.UnixMilli()) / 1e3
		for _, name := range []string{"db1", "db2"} {
			n := sc.Nodes[name]
			inst := agentInstance(r.L.Nodes[name])
			up := key{name, fmt.Sprintf(`up{job=%q,instance=%q}`, AlertsJob, inst)}
			seen := map[key]bool{up: true}
			set := func(k key, v string) {
				if _, ok := vals[k]; !ok {
					order = append(order, k)
					vals[k] = slices.Repeat([]string{"_"}, i)
				}
				vals[k] = append(vals[k], v)
			}
			set(up, strconv.Itoa(b2i(n.Err == nil)))
			for _, s := range n.Samples {
				if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
					continue
				}
				var sel strings.Builder
				fmt.Fprintf(&sel, "%s{job=%q,instance=%q", s.Name, AlertsJob, inst)
				for _, l := range s.Labels {
					fmt.Fprintf(&sel, ",%s=%q", l[0], l[1])
				}
				sel.WriteByte('}')
				k := key{name, sel.String()}
				if seen[k] {
					continue
				}
				seen[k] = true
				v := s.Value
				if strings.HasSuffix(s.Name, "_timestamp_seconds") || s.Name == "process_start_time_seconds" {
					v = v - wall + ruleNow
				}
				set(k, strconv.FormatFloat(v, 'f', -1, 64))
			}
			for _, k := range order {
				if k.node != name || seen[k] || len(vals[k]) != i {
					continue
				}
				gone := "stale"
				if last := vals[k][i-1]; last == "stale" || last == "_" {
					gone = "_"
				}
				vals[k] = append(vals[k], gone)
			}
		}
	}
	var out []inputSeries
	for _, k := range order {
		v := vals[k]
		last := v[len(v)-1]
		s := strings.Join(v, " ")
		if hold > 0 && last != "stale" && last != "_" {
			s += fmt.Sprintf(" %sx%d", last, hold)
		}
		out = append(out, inputSeries{k.sel, s})
	}
	return out
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// promDur writes d as promtool reads durations (whole seconds).
func promDur(d time.Duration) string { return fmt.Sprintf("%ds", int64(d/time.Second)) }

// yamlQuote writes s as a single-quoted YAML scalar.
func yamlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
