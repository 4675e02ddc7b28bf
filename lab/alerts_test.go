package lab

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The shipped alert rules against what the lab's failures look like on
// both nodes' /metrics: each scenario scrapes agentcheck as Prometheus
// would, and promtool evaluates examples/prometheus/vipguard-alerts.yml
// over the samples, the final state held as if it lasted.

// alertsLab returns the lab, its holder and standby in the clean state,
// and a recorder; the lab is recovered when the test ends.
func alertsLab(t *testing.T, view ScrapeView) (*Lab, context.Context, string, string, *MetricsRecorder) {
	t.Helper()
	l := needLab(t)
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatalf("promtool not found (apt-get install prometheus): %v", err)
	}
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	h, err := l.Holder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Recover(context.Background(), 60*time.Second); err != nil {
			t.Fatalf("recovering: %v\n%s", err, l.Diagnostics())
		}
	})
	rec := &MetricsRecorder{L: l, View: view}
	// The clean state first: no alert may come from it alone.
	if sc := rec.Take(ctx); sc.Nodes["db1"].Err != nil || sc.Nodes["db2"].Err != nil {
		t.Fatalf("scraping the clean lab:\n%s", sc.Summary())
	}
	return l, ctx, h, l.Nodes[h].Peer, rec
}

// promoted reports whether name's metrics show a completed promotion
// recorded after since.
func promoted(sc Scrape, name string, since time.Time) bool {
	n := sc.Nodes[name]
	_, done := n.Value("vipguard_notify_last_transition_info", "event", "MASTER", "phase", "done", "role", "writer")
	at, ok := n.Value("vipguard_notify_last_transition_timestamp_seconds")
	w, _ := n.Value("vipguard_role", "role", "writer")
	return done && ok && at >= float64(since.Unix()) && w == 1
}

// transition reports whether name's metrics show notify's last outcome as
// event and phase, recorded after since.
func transition(sc Scrape, name, event, phase string, since time.Time) bool {
	n := sc.Nodes[name]
	_, ok := n.Value("vipguard_notify_last_transition_info", "event", event, "phase", phase)
	at, _ := n.Value("vipguard_notify_last_transition_timestamp_seconds")
	return ok && at >= float64(since.Unix())
}

// writer reports name's vipguard_role writer gauge.
func writer(sc Scrape, name string) bool {
	w, _ := sc.Nodes[name].Value("vipguard_role", "role", "writer")
	return w == 1
}

// neverTwoWriters fails t for every recorded scrape in which both nodes
// say they are writable.
func neverTwoWriters(t *testing.T, rec *MetricsRecorder) {
	t.Helper()
	for i, sc := range rec.Scrapes {
		if writer(sc, "db1") && writer(sc, "db2") {
			t.Errorf("scrape %d (%s): both nodes report role writer", i, sc.At.Format("15:04:05.000"))
		}
	}
}

// mysqld killed on the writer: the peer's promotion is a new transition on
// its /metrics and fires the failover alert there; the pair never lacks a
// writer for long enough to page, never has two; the dead node, held
// dead, is the unfit alert.
func TestAlertsWriterKilled(t *testing.T) {
	l, ctx, h, s, rec := alertsLab(t, FromProxy)
	t0 := time.Now()
	l.KillMySQL(h)
	if err := rec.Until(ctx, 25*time.Second, s+" promoted", func(sc Scrape) bool { return promoted(sc, s, t0) }); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	if sc := rec.Scrapes[0]; promoted(sc, s, t0) {
		t.Fatalf("%s showed a promotion before the kill", s)
	}
	mustAlerts(t, rec, ctx, t.TempDir(), 11*time.Minute, []AlertWant{
		{Alert: "VipguardFailover", Node: s, Want: Fires},
		{Alert: "VipguardFailover", Node: h, Want: Quiet},
		{Alert: "VipguardNodeUnfit", Node: h, Want: Fires},
		{Alert: "VipguardNodeUnfit", Node: s, Want: Quiet},
		{Alert: "VipguardNoWriter", Want: Quiet},
		{Alert: "VipguardTwoWriters", Want: Never},
		{Alert: "VipguardScrapeDown", Want: Quiet},
		{Alert: "VipguardFlapping", Want: Never},
	})
	t.Logf("%d scrapes over %.1fs, from the kill to %s's promotion on /metrics", len(rec.Scrapes), time.Since(t0).Seconds(), s)
}

// The standby's SQL thread stopped: its channel is broken on /metrics and
// the replication alert fires for it, not for the writer.
func TestAlertsStandbySQLThreadStopped(t *testing.T) {
	l, ctx, h, s, rec := alertsLab(t, FromProxy)
	// A stopped SQL thread alone is restarted by notify's fence within a
	// second (the fast path makes the standby FAULT at once): an error
	// restarting cannot mend keeps it broken.
	mend, err := l.BreakReplication(ctx, s, h)
	if err != nil {
		t.Fatal(err)
	}
	err = rec.Until(ctx, 5*time.Second, s+" channel broken", func(sc Scrape) bool {
		v, ok := sc.Nodes[s].Value("vipguard_replication_broken")
		return ok && v == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	mustAlerts(t, rec, ctx, t.TempDir(), 3*time.Minute, []AlertWant{
		{Alert: "VipguardReplicationBroken", Node: s, Want: Fires},
		{Alert: "VipguardReplicationBroken", Node: h, Want: Quiet},
		{Alert: "VipguardReverseReplicationBroken", Want: Quiet},
		{Alert: "VipguardNoWriter", Want: Never},
		{Alert: "VipguardTwoWriters", Want: Never},
	})
	if err := mend(ctx); err != nil {
		t.Fatal(err)
	}
}

// Maintenance on the standby, left on: the maintenance alert fires after
// four hours (from the time the flag records), the unfit alert does not
// (maintenance is the reason), and the pair keeps its writer.
func TestAlertsMaintenance(t *testing.T) {
	l, ctx, h, s, rec := alertsLab(t, FromProxy)
	if err := l.Maintenance(ctx, s, true, "lab: alerts"); err != nil {
		t.Fatal(err)
	}
	err := rec.Until(ctx, 5*time.Second, s+" in maintenance", func(sc Scrape) bool {
		_, since := sc.Nodes[s].Value("vipguard_maintenance_since_timestamp_seconds")
		return since
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	err = rec.CheckAlerts(ctx, dir, 3*time.Hour+50*time.Minute, []AlertWant{
		{Alert: "VipguardMaintenanceTooLong", Want: Quiet},
	})
	if err != nil {
		t.Fatalf("before four hours: %v", err)
	}
	mustAlerts(t, rec, ctx, dir, 4*time.Hour+5*time.Minute, []AlertWant{
		{Alert: "VipguardMaintenanceTooLong", Node: s, Want: Fires},
		{Alert: "VipguardMaintenanceTooLong", Node: h, Want: Quiet},
		{Alert: "VipguardNodeUnfit", Want: Quiet},
		{Alert: "VipguardNoWriter", Want: Never},
		{Alert: "VipguardTwoWriters", Want: Never},
	})
}

// The writer cut off with its link up. Scraped from each node itself (what
// each says even while unreachable), at no scrape are both writable: the
// two-writers alert is never even pending, and the peer's promotion fires
// the failover alert. Seen from the proxy's host, the cut-off node is a
// scrape target down.
func TestAlertsPartition(t *testing.T) {
	l, ctx, h, s, rec := alertsLab(t, FromSelf)
	t0 := time.Now()
	if err := l.Partition(ctx, h); err != nil {
		t.Fatal(err)
	}
	fenced := func(sc Scrape) bool {
		w, ok := sc.Nodes[h].Value("vipguard_role", "role", "writer")
		return ok && w == 0
	}
	if err := rec.Until(ctx, 25*time.Second, s+" promoted and "+h+" fenced", func(sc Scrape) bool {
		return promoted(sc, s, t0) && fenced(sc)
	}); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	neverTwoWriters(t, rec)
	mustAlerts(t, rec, ctx, t.TempDir(), 2*time.Minute, []AlertWant{
		{Alert: "VipguardTwoWriters", Want: Never},
		{Alert: "VipguardFailover", Node: s, Want: Fires},
		{Alert: "VipguardNoWriter", Want: Quiet},
	})

	proxy := &MetricsRecorder{L: l, View: FromProxy}
	sc := proxy.Take(ctx)
	if sc.Nodes[h].Err == nil {
		t.Fatalf("%s answers /metrics from the proxy host while cut off", h)
	}
	mustAlerts(t, proxy, ctx, t.TempDir(), 3*time.Minute, []AlertWant{
		{Alert: "VipguardScrapeDown", Node: h, Want: Fires},
		{Alert: "VipguardScrapeDown", Node: s, Want: Quiet},
	})
}

// mysqld frozen (SIGSTOP) on the writer. Its agentcheck still answers
// /metrics, showing a server it cannot read; the peer's promotion fires the
// failover alert; notify's fence on the frozen node cannot land (it keeps
// retrying until the server answers), which the notify alert reports; held
// frozen, the node is unfit. agentcheck's own poll loop is not what hangs,
// and one failover is no flapping.
func TestAlertsWriterFrozen(t *testing.T) {
	l, ctx, h, s, rec := alertsLab(t, FromProxy)
	t0 := time.Now()
	if err := l.FreezeMySQL(h); err != nil {
		t.Fatal(err)
	}
	err := rec.Until(ctx, 25*time.Second, s+" promoted and "+h+"'s fence failed", func(sc Scrape) bool {
		up, ok := sc.Nodes[h].Value("vipguard_agent_mysql_up")
		return promoted(sc, s, t0) && ok && up == 0 && transition(sc, h, "FAULT", "failed", t0)
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	neverTwoWriters(t, rec)
	mustAlerts(t, rec, ctx, t.TempDir(), 11*time.Minute, []AlertWant{
		{Alert: "VipguardFailover", Node: s, Want: Fires},
		{Alert: "VipguardFailover", Node: h, Want: Quiet},
		{Alert: "VipguardNotifyFailed", Node: h, Want: Fires},
		{Alert: "VipguardNotifyFailed", Node: s, Want: Quiet},
		{Alert: "VipguardNodeUnfit", Node: h, Want: Fires},
		{Alert: "VipguardNodeUnfit", Node: s, Want: Quiet},
		{Alert: "VipguardNoWriter", Want: Quiet},
		{Alert: "VipguardTwoWriters", Want: Never},
		{Alert: "VipguardPollLoopStale", Want: Never},
		{Alert: "VipguardScrapeDown", Want: Never},
		{Alert: "VipguardFlapping", Want: Never},
	})
	t.Logf("%d scrapes over %.1fs, from the freeze to %s's promotion and %s's failed fence on /metrics", len(rec.Scrapes), time.Since(t0).Seconds(), s, h)
}

// The writer's link cut (carrier lost): keepalived there goes FAULT and
// notify fences it while the peer is promoted. Scraped from each node
// itself, no scrape shows both writable and the promotion is a failover;
// from the proxy's host, where a Prometheus beside HAProxy scrapes, the
// cut node is a scrape target down while the pair keeps its writer.
func TestAlertsWriterLinkCut(t *testing.T) {
	l, ctx, h, s, rec := alertsLab(t, FromSelf)
	t0 := time.Now()
	if err := l.CutLink(ctx, h); err != nil {
		t.Fatal(err)
	}
	if err := rec.Until(ctx, 25*time.Second, s+" promoted and "+h+" fenced", func(sc Scrape) bool {
		_, ok := sc.Nodes[h].Value("vipguard_role", "role", "writer")
		return promoted(sc, s, t0) && ok && !writer(sc, h)
	}); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	neverTwoWriters(t, rec)
	mustAlerts(t, rec, ctx, t.TempDir(), 2*time.Minute, []AlertWant{
		{Alert: "VipguardTwoWriters", Want: Never},
		{Alert: "VipguardFailover", Node: s, Want: Fires},
		{Alert: "VipguardFailover", Node: h, Want: Quiet},
		{Alert: "VipguardNoWriter", Want: Quiet},
		{Alert: "VipguardFlapping", Want: Never},
	})

	proxy := &MetricsRecorder{L: l, View: FromProxy}
	sc := proxy.Take(ctx)
	if sc.Nodes[h].Err == nil {
		t.Fatalf("%s answers /metrics from the proxy host while its link is down", h)
	}
	mustAlerts(t, proxy, ctx, t.TempDir(), 3*time.Minute, []AlertWant{
		{Alert: "VipguardScrapeDown", Node: h, Want: Fires},
		{Alert: "VipguardScrapeDown", Node: s, Want: Quiet},
		{Alert: "VipguardNoWriter", Want: Quiet},
		{Alert: "VipguardTwoWriters", Want: Quiet},
	})
}

// keepalived stopped (SIGTERM) on the writer: it releases the VIP, notify
// fences the node (STOP) and the peer is promoted. The stopped node is a
// healthy, replicating standby by every other series, so only the
// keepalived alert says the pair has lost its failover target; started
// again, keepalived records BACKUP and the alert clears.
func TestAlertsKeepalivedStopped(t *testing.T) {
	l, ctx, h, s, rec := alertsLab(t, FromProxy)
	t0 := time.Now()
	l.StopKeepalived(h)
	if err := rec.Until(ctx, 25*time.Second, s+" promoted and "+h+"'s STOP recorded", func(sc Scrape) bool {
		return promoted(sc, s, t0) && transition(sc, h, "STOP", "done", t0)
	}); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	neverTwoWriters(t, rec)
	dir := t.TempDir()
	mustAlerts(t, rec, ctx, dir, 11*time.Minute, []AlertWant{
		{Alert: "VipguardKeepalivedStopped", Node: h, Want: Fires},
		{Alert: "VipguardKeepalivedStopped", Node: s, Want: Quiet},
		{Alert: "VipguardFailover", Node: s, Want: Fires},
		{Alert: "VipguardNodeUnfit", Want: Quiet},
		{Alert: "VipguardReplicationBroken", Want: Quiet},
		{Alert: "VipguardNotifyFailed", Want: Quiet},
		{Alert: "VipguardNotifyStuck", Want: Quiet},
		{Alert: "VipguardNoWriter", Want: Quiet},
		{Alert: "VipguardTwoWriters", Want: Never},
		{Alert: "VipguardFlapping", Want: Never},
	})

	t1 := time.Now()
	if err := l.StartKeepalived(h); err != nil {
		t.Fatal(err)
	}
	if err := rec.Until(ctx, 25*time.Second, h+"'s BACKUP recorded", func(sc Scrape) bool {
		return transition(sc, h, "BACKUP", "done", t1)
	}); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	mustAlerts(t, rec, ctx, dir, 11*time.Minute, []AlertWant{
		{Alert: "VipguardKeepalivedStopped", Want: Quiet},
		{Alert: "VipguardNodeUnfit", Want: Quiet},
		{Alert: "VipguardTwoWriters", Want: Never},
	})
}

// flapMoves is how many times TestAlertsFlapping moves the VIP: the
// flapping alert's threshold.
const flapMoves = 3

// The VIP moved back and forth: maintenance on the holder, off again as
// soon as the peer has taken over and the old holder is a standby, then
// the same from the other side, flapMoves times in a few seconds. Every
// promotion counts, although the scrapes between them are fast; the
// flapping alert fires for the pair and clears once the moves are 30
// minutes old; the pair never has two writers.
func TestAlertsFlapping(t *testing.T) {
	l, ctx, h, s, rec := alertsLab(t, FromProxy)
	from, to := h, s
	for i := range flapMoves {
		t1 := time.Now()
		if err := l.Maintenance(ctx, from, true, "lab: flapping"); err != nil {
			t.Fatal(err)
		}
		if err := rec.Until(ctx, 20*time.Second, fmt.Sprintf("move %d: %s promoted", i+1, to), func(sc Scrape) bool {
			return promoted(sc, to, t1)
		}); err != nil {
			t.Fatalf("%v\n%s", err, l.Diagnostics())
		}
		t2 := time.Now()
		if err := l.Maintenance(ctx, from, false, ""); err != nil {
			t.Fatal(err)
		}
		if err := rec.Until(ctx, 20*time.Second, fmt.Sprintf("move %d: %s a fit standby", i+1, from), func(sc Scrape) bool {
			fit, _ := sc.Nodes[from].Value("vipguard_agent_up", "role", "health")
			return fit == 1 && transition(sc, from, "BACKUP", "done", t2)
		}); err != nil {
			t.Fatalf("%v\n%s", err, l.Diagnostics())
		}
		from, to = to, from
	}
	neverTwoWriters(t, rec)
	var moves float64
	for _, name := range []string{"db1", "db2"} {
		a, _ := rec.Scrapes[0].Nodes[name].Value("vipguard_notify_promotions_total")
		b, _ := rec.Scrapes[len(rec.Scrapes)-1].Nodes[name].Value("vipguard_notify_promotions_total")
		moves += b - a
	}
	if moves != flapMoves {
		t.Errorf("vipguard_notify_promotions_total rose by %g on the pair over %d moves", moves, flapMoves)
	}
	dir := t.TempDir()
	mustAlerts(t, rec, ctx, dir, time.Minute, []AlertWant{
		{Alert: "VipguardFlapping", Want: Fires},
		{Alert: "VipguardFailover", Node: from, Want: Fires},
		{Alert: "VipguardFailover", Node: to, Want: Quiet},
		{Alert: "VipguardNoWriter", Want: Quiet},
		{Alert: "VipguardMaintenanceTooLong", Want: Never},
		{Alert: "VipguardTwoWriters", Want: Never},
	})
	if err := rec.CheckAlerts(ctx, dir, 31*time.Minute, []AlertWant{{Alert: "VipguardFlapping", Want: Quiet}}); err != nil {
		t.Fatalf("half an hour later: %v", err)
	}
	t.Logf("%d moves in %d scrapes (%s in rule time)", flapMoves, len(rec.Scrapes), time.Duration(len(rec.Scrapes))*alertStep)
}

// The harness itself, without a lab: synthetic scrapes of two writable
// nodes must fail a Never check on the two-writers alert, and a scrape
// series must come out as promtool reads it.
func TestAlertsHarness(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	l := &Lab{Root: root, Nodes: map[string]*Node{"db1": {Name: "db1", Addr: DB1Addr}, "db2": {Name: "db2", Addr: DB2Addr}}}
	body := func(writer int, promotedAt float64) []Sample {
		s, err := ParseMetrics(fmt.Sprintf(`# TYPE vipguard_node_info gauge
vipguard_node_info{pair="",node="lab \"x\"",version="v1"} 1
vipguard_role{role="writer"} %d
vipguard_role{role="standby"} %d
vipguard_notify_last_transition_info{event="MASTER",phase="done",role="writer"} 1
vipguard_notify_last_transition_timestamp_seconds %.3f
`, writer, 1-writer, promotedAt))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got := body(1, 0)[0]; got.Label("node") != `lab "x"` || got.Label("pair") != "" || got.Value != 1 {
		t.Fatalf("parsed %+v", got)
	}
	start := time.Unix(1772366400, 0)
	rec := &MetricsRecorder{L: l}
	for i, w := range [][2]int{{1, 0}, {1, 0}, {1, 1}, {1, 0}} {
		at := start.Add(time.Duration(i) * time.Second)
		// db2 promoted 30 s before the first scrape, db1 long before.
		rec.Scrapes = append(rec.Scrapes, Scrape{At: at, Nodes: map[string]NodeMetrics{
			"db1": {Samples: body(w[0], float64(start.Unix()-86400))},
			"db2": {Samples: body(w[1], float64(start.Unix()-30))},
		}})
	}
	dir := t.TempDir()
	if err := rec.CheckAlerts(context.Background(), dir, time.Minute, []AlertWant{{Alert: "VipguardTwoWriters", Want: Never}}); err == nil {
		t.Fatal("a scrape with both nodes writable passed the two-writers Never check")
	}
	// Held, two writers do fire; the promotion 30 s before is a failover
	// 15 minutes long in rule time, the one a day old is not.
	rec.Scrapes[3] = rec.Scrapes[2]
	err = rec.CheckAlerts(context.Background(), dir, 2*time.Minute, []AlertWant{
		{Alert: "VipguardTwoWriters", Want: Fires},
		{Alert: "VipguardFailover", Node: "db2", Want: Fires},
		{Alert: "VipguardFailover", Node: "db1", Want: Never},
	})
	if err != nil {
		t.Fatal(err)
	}
	err = rec.CheckAlerts(context.Background(), dir, 15*time.Minute, []AlertWant{{Alert: "VipguardFailover", Node: "db2", Want: Quiet}})
	if err != nil {
		t.Fatal(err)
	}
	// Each check can fail.
	for _, w := range []AlertWant{{Alert: "VipguardTwoWriters", Want: Quiet}, {Alert: "VipguardFailover", Node: "db1", Want: Fires}} {
		if rec.CheckAlerts(context.Background(), dir, 2*time.Minute, []AlertWant{w}) == nil {
			t.Errorf("%+v passed", w)
		}
	}
	if s := rec.series(0); !strings.Contains(s[0].selector, `up{job="vipguard",instance="192.0.2.11:9200"}`) {
		t.Errorf("first series %+v, want db1's up", s[0])
	}
}

// mustAlerts is CheckAlerts failing the test at once.
func mustAlerts(t *testing.T, rec *MetricsRecorder, ctx context.Context, dir string, at time.Duration, want []AlertWant) {
	t.Helper()
	if err := rec.CheckAlerts(ctx, dir, at, want); err != nil {
		t.Fatal(err)
	}
}
