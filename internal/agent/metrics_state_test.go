package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/cli"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// standbySnapshot is a read-only node with a streaming default channel
// 4 s behind and a named channel whose SQL thread stopped on error 1062.
func standbySnapshot() *probe.Snapshot {
	return &probe.Snapshot{ReadOnly: true, Replicas: []probe.Replica{
		{SourceHost: "db1", IORunning: probe.IOYes, SQLRunning: true, SecondsBehind: i64(4)},
		{Channel: `b"2`, SourceHost: "db3", IORunning: probe.IOYes, SQLRunning: false, SQLErrno: 1062, SQLError: "Duplicate entry"},
	}}
}

func stateMetrics(t *testing.T, pair string, in Input) string {
	t.Helper()
	c := config.Default()
	c.Agent.Pair = pair
	c.Check.MaxLag.Duration = 300 * time.Second
	c.Check.WarnLag.Duration = 30 * time.Second
	m := new(Metrics)
	m.SetConfig(c)
	return string(m.Write(in, PolicyFrom(c)))
}

// The series the alert rules in examples/prometheus are written against:
// a rule over a series that is missing or renamed never fires.
func TestMetricsNodeState(t *testing.T) {
	defer func(v string) { cli.Version = v }(cli.Version)
	cli.Version = "v1.2.3"
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	poll := func(s *probe.Snapshot) *State { return &State{Snapshot: s, At: now.Add(-time.Second)} }
	promoted := &state.Outcome{Event: "MASTER", Phase: state.PhaseDone, Role: state.RoleWriter, At: now.Add(-90 * time.Second)}
	cases := []struct {
		name       string
		pair       string
		in         Input
		want, deny []string
	}{
		{"writer", "orders-db", Input{Poll: poll(&probe.Snapshot{}), Now: now, LoopAlive: true, Outcome: promoted},
			[]string{
				`vipguard_node_info{pair="orders-db",node="` + hostname + `",version="v1.2.3"} 1`,
				`vipguard_role{role="writer"} 1`, `vipguard_role{role="standby"} 0`,
				`vipguard_replication_channels 0`,
				`vipguard_notify_last_transition_info{event="MASTER",phase="done",role="writer"} 1`,
				`vipguard_notify_last_transition_timestamp_seconds 1772366310.000`,
				`vipguard_notify_last_transition_unfit 0`,
				`vipguard_check_max_lag_seconds 300`, `vipguard_check_warn_lag_seconds 30`,
				`vipguard_agent_up{role="writer"} 1`, `vipguard_agent_up{role="liveness"} 1`, `vipguard_agent_up{role="readiness"} 1`,
			},
			[]string{"vipguard_replication_io_running", "vipguard_maintenance_since_timestamp_seconds"}},
		{"standby in maintenance, one channel broken", "", Input{Poll: poll(standbySnapshot()), Now: now, LoopAlive: true,
			Maintenance: state.Maintenance{On: true, Since: now.Add(-2 * time.Hour)},
			Outcome:     &state.Outcome{Event: "BACKUP", Phase: state.PhaseDone, Role: state.RoleStandby, At: now.Add(-time.Hour)}},
			[]string{
				`vipguard_node_info{pair="",node="` + hostname + `",version="v1.2.3"} 1`,
				`vipguard_role{role="writer"} 0`, `vipguard_role{role="standby"} 1`,
				`vipguard_replication_channels 2`,
				`vipguard_replication_io_running{channel=""} 1`, `vipguard_replication_io_running{channel="b\"2"} 1`,
				`vipguard_replication_sql_running{channel=""} 1`, `vipguard_replication_sql_running{channel="b\"2"} 0`,
				`vipguard_replication_broken{channel=""} 0`, `vipguard_replication_broken{channel="b\"2"} 1`,
				`vipguard_replication_lag_seconds{channel=""} 4`,
				`vipguard_replication_last_errno{channel="b\"2",thread="sql"} 1062`,
				`vipguard_replication_last_errno{channel="",thread="io"} 0`,
				`vipguard_agent_maintenance 1`,
				`vipguard_maintenance_since_timestamp_seconds 1772359200.000`,
				`vipguard_notify_last_transition_info{event="BACKUP",phase="done",role="standby"} 1`,
				`vipguard_agent_up{role="health"} 0`,
			},
			// The stopped applier has no lag to show.
			[]string{`vipguard_replication_lag_seconds{channel="b\"2"}`}},
		{"refused promotion", "p", Input{Poll: poll(&probe.Snapshot{ReadOnly: true}), Now: now, LoopAlive: true,
			Outcome: &state.Outcome{Event: "MASTER", Phase: state.PhaseFailed, Role: state.RoleStandby, Unfit: true, At: now}},
			[]string{
				`vipguard_notify_last_transition_info{event="MASTER",phase="failed",role="standby"} 1`,
				`vipguard_notify_last_transition_unfit 1`,
			}, nil},
		{"outcome from elsewhere", "p", Input{Poll: poll(&probe.Snapshot{ReadOnly: true}), Now: now, LoopAlive: true,
			Outcome: &state.Outcome{Event: "MASTER\nx", Phase: "halfway", Role: "boss", At: now}},
			[]string{`vipguard_notify_last_transition_info{event="other",phase="other",role="other"} 1`}, nil},
		{"unreadable outcome", "p", Input{Poll: poll(&probe.Snapshot{ReadOnly: true}), Now: now, LoopAlive: true,
			Outcome: &state.Outcome{Unfit: true, Reason: "notify outcome corrupt"}, OutcomeErr: errors.New("corrupt")},
			[]string{`vipguard_notify_last_transition_info{event="",phase="",role=""} 1`, `vipguard_notify_last_transition_unfit 1`},
			[]string{"vipguard_notify_last_transition_timestamp_seconds"}},
		{"server down", "p", Input{Poll: &State{Err: errors.New("refused"), At: now}, Now: now, LoopAlive: true},
			[]string{`vipguard_role{role="writer"} 0`, `vipguard_role{role="standby"} 0`, `vipguard_agent_mysql_up 0`,
				`vipguard_agent_up{role="liveness"} 1`, `vipguard_agent_up{role="readiness"} 0`},
			[]string{"vipguard_replication_channels", "vipguard_notify_last_transition_info"}},
		{"poll loop stuck", "p", Input{Poll: poll(&probe.Snapshot{}), Now: now.Add(time.Minute), LoopAlive: false},
			[]string{`vipguard_agent_up{role="liveness"} 0`, `vipguard_agent_state_age_seconds 61`,
				`vipguard_role{role="writer"} 0`, `vipguard_role{role="standby"} 0`},
			[]string{"vipguard_replication_channels"}},
		{"maintenance without a time", "p", Input{Poll: poll(&probe.Snapshot{ReadOnly: true}), Now: now, LoopAlive: true,
			Maintenance: state.Maintenance{On: true}},
			[]string{`vipguard_agent_maintenance 1`}, []string{"vipguard_maintenance_since_timestamp_seconds"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := stateMetrics(t, tc.pair, tc.in)
			lines := map[string]bool{}
			for _, l := range strings.Split(body, "\n") {
				lines[l] = true
			}
			for _, w := range tc.want {
				if !lines[w] {
					t.Errorf("no line %s in:\n%s", w, body)
				}
			}
			for _, d := range tc.deny {
				if strings.Contains(body, "\n"+d) {
					t.Errorf("%s present in:\n%s", d, body)
				}
			}
			promtoolCheckMetrics(t, body)
		})
	}
}

// The last successful poll's time survives failed polls after it: its age
// is what says how long the node has been blind.
func TestMetricsLastSuccessfulPoll(t *testing.T) {
	m := new(Metrics)
	at := time.Unix(1772366400, 250e6)
	re := regexp.MustCompile(`(?m)^vipguard_agent_last_successful_poll_timestamp_seconds (.*)$`)
	if g := re.FindStringSubmatch(string(m.Write(Input{Now: at}, Policy{}))); g != nil {
		t.Fatalf("timestamp %s before any poll", g[1])
	}
	m.observePoll(&State{Snapshot: &probe.Snapshot{}, At: at})
	m.observePoll(&State{Err: errors.New("refused"), At: at.Add(5 * time.Second)})
	g := re.FindStringSubmatch(string(m.Write(Input{Now: at.Add(6 * time.Second)}, Policy{})))
	if g == nil || g[1] != "1772366400.250" {
		t.Fatalf("last successful poll %v, want 1772366400.250", g)
	}
}

// promtoolCheckMetrics runs promtool check metrics (Debian's prometheus
// package) on body: the exposition must parse, and follow the naming
// conventions, without a word of complaint.
func promtoolCheckMetrics(t *testing.T, body string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv(mariadbtest.RequireEnv) == "1" {
			t.Fatalf("promtool not found (and %s=1): apt-get install prometheus", mariadbtest.RequireEnv)
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil || out.Len() > 0 {
		t.Fatalf("promtool check metrics: %v\n%s\non:\n%s", err, out.String(), body)
	}
}

// The whole /metrics of a running agentcheck, the witness and allow-list
// series included, passes promtool, and carries the pair once SetConfig
// has run.
func TestMetricsPromtoolClean(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{})
	cfg := socketConfig(t, s, `pair = "orders"`)
	srv, addr := startServer(t, cfg)
	srv.Metrics.SetConfig(srv.Config())
	code, body := httpGet(t, addr, "GET", "/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d: %s", code, body)
	}
	for _, w := range []string{`vipguard_node_info{pair="orders",`, "vipguard_role{", "vipguard_unguarded ", "vipguard_agent_connections_refused_total "} {
		if !strings.Contains(body, "\n"+w) {
			t.Errorf("/metrics lacks %s:\n%s", w, body)
		}
	}
	promtoolCheckMetrics(t, body)
}

// Promotions are counted once each, from the outcomes notify writes: not
// the one already recorded when agentcheck starts, not a promotion seen
// again, not a refused one or a fence.
func TestMetricsPromotionsCounted(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	promo := func(at time.Duration) *state.Outcome {
		return &state.Outcome{Event: "MASTER", Phase: state.PhaseDone, Role: state.RoleWriter, At: t0.Add(at)}
	}
	other := func(ev string, ph state.Phase, at time.Duration) *state.Outcome {
		return &state.Outcome{Event: ev, Phase: ph, Role: state.RoleStandby, At: t0.Add(at)}
	}
	type step struct {
		o    *state.Outcome
		want uint64
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"from no outcome", []step{
			{nil, 0}, {other("MASTER", state.PhaseRunning, 1), 0}, {promo(2), 1}, {promo(2), 1},
			{other("FAULT", state.PhaseRunning, 3), 1}, {other("FAULT", state.PhaseDone, 4), 1},
			{other("MASTER", state.PhaseFailed, 5), 1}, {promo(6), 2}, {promo(7), 3},
		}},
		{"a writer restarted", []step{{promo(0), 0}, {promo(0), 0}, {other("BACKUP", state.PhaseDone, 1), 0}, {promo(2), 1}}},
		{"a standby restarted", []step{{other("BACKUP", state.PhaseDone, 0), 0}, {promo(1), 1}}},
		{"an unreadable outcome", []step{{&state.Outcome{Unfit: true}, 0}, {promo(1), 1}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := new(Metrics)
			for i, s := range tc.steps {
				m.observeOutcome(s.o)
				if got := m.promos.n.Load(); got != s.want {
					t.Fatalf("step %d (%+v): %d promotions, want %d", i, s.o, got, s.want)
				}
			}
			body := string(m.Write(Input{Now: t0}, Policy{}))
			if want := fmt.Sprintf("\nvipguard_notify_promotions_total %d\n", tc.steps[len(tc.steps)-1].want); !strings.Contains(body, want) {
				t.Errorf("no line %q in:\n%s", want, body)
			}
			promtoolCheckMetrics(t, body)
		})
	}
}

// The running agent counts each promotion notify records, however soon
// the next follows and whether or not anyone scrapes in between; the one
// on record before it started is none.
func TestMetricsPromotionsFromOutcomeFile(t *testing.T) {
	cfg := testConfig(t, "socket = \"/nonexistent/mysqld.sock\"\nuser = \"root\"", "")
	dir := state.Dir(cfg.StateDir)
	promote := func() {
		if err := dir.WriteOutcome(state.Outcome{Event: "MASTER", Phase: state.PhaseDone, Role: state.RoleWriter}); err != nil {
			t.Fatal(err)
		}
	}
	promote()
	srv, addr := startServer(t, cfg)
	for want := uint64(1); want <= 3; want++ {
		time.Sleep(2 * time.Millisecond) // a new record time
		promote()
		deadline := time.Now().Add(3 * time.Second)
		for srv.Metrics.promos.n.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d promotions counted, want %d", srv.Metrics.promos.n.Load(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, body := httpGet(t, addr, "GET", "/metrics"); !strings.Contains(body, "\nvipguard_notify_promotions_total 3\n") {
		t.Errorf("/metrics:\n%s", body)
	}
}
