package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/state"
)

// notify's scenarios: cmd/notify run by keepalived from
// examples/keepalived/keepalived.conf. They need cmd/notify, so they skip
// under the stand-in (VIPGUARD_LAB_STANDIN=1), which only toggles
// read_only and is known to fail them.

func needNotify(t *testing.T) *Lab {
	t.Helper()
	l := needLab(t)
	if l.Opts.StandIn {
		t.Skip("the lab runs the stand-in notify: these scenarios need cmd/notify")
	}
	return l
}

// outcome reads notify's last outcome on a node, for the record.
func outcome(l *Lab, name string) string {
	o, err := state.Dir(l.Nodes[name].StateDir).Outcome()
	if err != nil || o == nil {
		return fmt.Sprintf("<%v>", err)
	}
	b, _ := json.Marshal(struct {
		Event  string
		Phase  state.Phase
		Role   state.Role
		Unfit  bool
		Reason string
	}{o.Event, o.Phase, o.Role, o.Unfit, o.Reason})
	return string(b)
}

// keepalived stopped on the master while an autocommit INSERT … SELECT …,
// SLEEP(4) runs there; the client retries its insert on the new master
// after the error. Today this breaks replication both ways with error 1062;
// with notify the fence kills the statement before read_only and the peer's
// promotion waits for the fenced position: replication runs on both nodes,
// the tables are identical, and the retry either succeeds once or meets the
// row as a duplicate key on the client, never in replication.
func TestNotifySlowInsertKeepalivedStop(t *testing.T) {
	l := needNotify(t)
	ctx := testCtx(t)
	f, _ := FaultByName("keepalived-stop")
	var ld *Load
	res, err := l.RunFailover(ctx, f, Hooks{Phase: func(m string) { t.Log(m) }, LoadStarted: func(x *Load) {
		ld = x
		if err := x.SlowRetry(4); err != nil {
			t.Error(err)
		}
	}})
	if res.From != "" {
		record(t, res.String())
	}
	if err != nil {
		t.Errorf("%v\n%s", err, l.Diagnostics())
	}
	if ld == nil {
		t.Fatal("load never started")
	}
	select {
	case ev := <-ld.SlowResults():
		record(t, fmt.Sprintf("%-16s %s→%s  slow INSERT…SLEEP(4): first attempt %q; %d retries, last %q; acknowledged %v after %.2fs",
			"slow-insert", res.From, res.To, ev.FirstErr, ev.Retries, ev.RetryResult, ev.OKSlow, ev.Took))
		if !ev.OKSlow {
			t.Errorf("slow insert never acknowledged: %s (first error %q, retry %q)", ev.Msg, ev.FirstErr, ev.RetryResult)
		}
		if ev.FirstErr == "" {
			t.Errorf("the slow insert succeeded on the old master although keepalived stopped there mid-statement")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no outcome of the slow insert")
	}
	t.Logf("outcomes: %s %s; %s %s", res.From, outcome(l, res.From), res.To, outcome(l, res.To))
}

// 20 idle clients connected through the VIP: when keepalived stops on the
// master, notify's fence resets them, so none stays ESTABLISHED to the old
// node later than 2 s after the VIP moved (today: 20 of 20 stay).
func TestNotifyIdleClientsReset(t *testing.T) {
	l := needNotify(t)
	ctx := testCtx(t)
	const idle = 20
	c := startVIPClients(ctx, t, l, idle)
	from, to := c.from, c.to
	t0 := time.Now()
	go l.StopKeepalived(from)
	if err := l.WaitHolder(ctx, to, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	stale := len(c.before)
	var gone time.Duration = -1
	for time.Since(moved) < 10*time.Second {
		if stale = c.stale(ctx, t); stale == 0 {
			gone = time.Since(moved)
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	res := c.stop(t)
	record(t, fmt.Sprintf("%-16s %s→%s  VIP moved %.2fs after keepalived stop; %d client connections to the old node before, still ESTABLISHED: %d, all gone after the VIP move: %s; idle at the end %v",
		"idle-clients", from, to, moved.Sub(t0).Seconds(), len(c.before), stale, fmtDur(max(gone, 0)), res.Summary.Idle))
	if gone < 0 || gone > 2*time.Second {
		// Where the client's challenge ACKs go: its neighbour entry for
		// the VIP against the nodes' MAC addresses.
		neigh, _ := l.Net.Exec(ctx, "client", "ip", "neigh", "show", VIP)
		macs := ""
		for _, n := range []string{"db1", "db2"} {
			out, _ := l.Net.Exec(ctx, n, "cat", "/sys/class/net/"+l.Net.IfName(n)+"/address")
			macs += fmt.Sprintf(" %s=%s", n, strings.TrimSpace(string(out)))
		}
		t.Errorf("%d of %d client connections still ESTABLISHED to the old node %s 2s after the VIP moved (gone after %v); client neighbour %s; MACs%s\n%s",
			stale, len(c.before), from, gone, strings.TrimSpace(string(neigh)), macs, l.Diagnostics())
	}
	// keepalived may still be shutting down (its STOP takes about a
	// second); Recover must find it gone to start it again.
	for end := time.Now().Add(15 * time.Second); l.KeepalivedRunning(from) && time.Now().Before(end); {
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Recover(ctx, 90*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	if err := l.VerifyAll(ctx, res.Acked); err != nil {
		t.Error(err)
	}
}

// vipClients is a load holding idle connections through the VIP, with the
// client's sockets to the VIP recorded while they all reach the holder.
type vipClients struct {
	l        *Lab
	from, to string
	ld       *Load
	before   map[string]bool
	stopped  bool
}

// startVIPClients waits for the clean state and starts it; the cleanup
// stops the load and recovers the lab.
func startVIPClients(ctx context.Context, t *testing.T, l *Lab, idle int) *vipClients {
	t.Helper()
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	c := &vipClients{l: l, from: mustHolder(t, l)}
	c.to = l.Nodes[c.from].Peer
	ld, err := l.StartLoad(ctx, LoadOptions{IdleVIP: idle})
	if err != nil {
		t.Fatal(err)
	}
	c.ld = ld
	t.Cleanup(func() {
		if !c.stopped {
			_, _ = ld.Stop()
		}
		if err := l.Recover(ctx, 90*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, l.Diagnostics())
		}
	})
	if c.before, err = l.clientVIPPorts(ctx); err != nil || len(c.before) < idle {
		t.Fatalf("%d client connections to the VIP before the failover (%v), want at least %d", len(c.before), err, idle)
	}
	return c
}

// stale counts the recorded connections the client still has ESTABLISHED.
func (c *vipClients) stale(ctx context.Context, t *testing.T) int {
	t.Helper()
	now, err := c.l.clientVIPPorts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for p := range c.before {
		if now[p] {
			n++
		}
	}
	return n
}

// stop ends the load.
func (c *vipClients) stop(t *testing.T) LoadResult {
	t.Helper()
	res, err := c.ld.Stop()
	c.stopped = true
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// clientVIPPorts returns the client's local ports of its ESTABLISHED TCP
// connections to VIP:3306.
func (l *Lab) clientVIPPorts(ctx context.Context) (map[string]bool, error) {
	out, err := l.Net.Exec(ctx, "client", "ss", "-Htn", "state", "established", "dst", fmt.Sprintf("%s:%d", VIP, MySQLPort))
	if err != nil {
		return nil, err
	}
	ports := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		// Recv-Q Send-Q Local:Port Peer:Port
		if len(f) >= 4 {
			ports[f[2]] = true
		}
	}
	return ports, nil
}

// The master's link is cut for 10 s, then healed: the isolated node fences
// itself (keepalived FAULT on carrier loss), the peer takes over, and after
// the heal both replicate, identical, nothing acknowledged lost; never two
// writable nodes (RunFailover's sampler, through the whole run).
func TestNotifyLinkCut10s(t *testing.T) {
	l := needNotify(t)
	ctx := testCtx(t)
	var cut time.Time
	f := Fault{Name: "link-cut-10s", Desc: "take the VIP holder's link down for 10 s",
		Inject: func(ctx context.Context, l *Lab, h string) error {
			cut = time.Now()
			return l.CutLink(ctx, h)
		},
		Undo: func(ctx context.Context, l *Lab, h string) error {
			if err := sleep(ctx, time.Until(cut.Add(10*time.Second))); err != nil {
				return err
			}
			t.Logf("isolated %s after 10s: keepalived %s, outcome %s", h, l.KeepalivedState(h), outcome(l, h))
			if s := l.KeepalivedState(h); s != "FAULT" {
				t.Errorf("isolated %s: keepalived %s, want FAULT", h, s)
			}
			if ro, err := l.ReadOnly(ctx, h, time.Second); err != nil || !ro {
				t.Errorf("isolated %s is not read-only (read_only=%v, %v)", h, ro, err)
			}
			return l.HealLink(ctx, h)
		}}
	res, err := l.RunFailover(ctx, f, Hooks{Phase: func(m string) { t.Log(m) }})
	if res.From != "" {
		record(t, res.String())
	}
	if err != nil {
		t.Errorf("%v\n%s", err, l.Diagnostics())
		if rerr := l.Recover(ctx, 60*time.Second); rerr != nil {
			t.Fatalf("lab could not recover: %v", rerr)
		}
	}
}

// Crash of the master (kill -9) while the standby lags (MASTER_DELAY):
// reliability first holds the promotion until the standby has applied
// everything it received (or the promotion timeout passes, leaving it
// read-only and unfit); availability first opens writes at once.
func TestNotifyLaggingStandbyCrash(t *testing.T) {
	l := needNotify(t)
	for _, tc := range []struct {
		name    string
		policy  NotifyPolicy
		delay   time.Duration
		promote bool // writes open at all
		waits   bool // and only after catching up
	}{
		{"reliability-caught-up", NotifyPolicy{"reliability", 15 * time.Second}, 5 * time.Second, true, true},
		{"reliability-timeout", NotifyPolicy{"reliability", 3 * time.Second}, 20 * time.Second, false, false},
		{"availability", NotifyPolicy{"availability", 15 * time.Second}, 8 * time.Second, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lagCrash(t, l, tc.policy, tc.delay, tc.promote, tc.waits)
		})
	}
}

func lagCrash(t *testing.T, l *Lab, np NotifyPolicy, delay time.Duration, promote, waits bool) {
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	from := mustHolder(t, l)
	to := l.Nodes[from].Peer
	for _, n := range l.Nodes {
		if err := l.WriteNodeTOML(n, np); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, n := range l.Nodes {
			if err := l.WriteNodeTOML(n, DefaultNotifyPolicy); err != nil {
				t.Error(err)
			}
		}
		if err := l.Recover(ctx, 90*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, l.Diagnostics())
		}
	}()
	if err := l.SetReplicationDelay(ctx, to, delay); err != nil {
		t.Fatal(err)
	}
	// SetReplicationDelay stopped and restarted replication: keepalived on
	// the standby may have seen it unfit for a moment. Let it settle.
	if err := l.WaitStable(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	sampler, err := l.StartSampler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("lagged-%d", time.Now().UnixNano())
	if err := l.Nodes[from].DB.Exec(ctx, "INSERT INTO vgtest.lab_writes (k, path, server_id) VALUES ('"+key+"', 'lab', @@server_id)"); err != nil {
		t.Fatal(err)
	}
	wrote := time.Now()
	// Received by the standby (relay log), not applied before the delay.
	if err := sleep(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	l.KillMySQL(from)
	var writable time.Duration
	present, unfit := "", ""
	limit := delay + np.PromotionTimeout + 15*time.Second
	for time.Since(t0) < limit {
		if o, _ := state.Dir(l.Nodes[to].StateDir).Outcome(); o != nil && o.Unfit && unfit == "" {
			unfit = fmt.Sprintf("%.2fs after the crash: %s", time.Since(t0).Seconds(), o.Reason)
		}
		if ro, err := l.ReadOnly(ctx, to, 300*time.Millisecond); err == nil && !ro {
			writable = time.Since(t0)
			present, _ = l.Nodes[to].DB.Query(ctx, "SELECT COUNT(*) FROM vgtest.lab_writes WHERE k = ?", key)
			break
		}
		if !promote && time.Since(t0) > np.PromotionTimeout+6*time.Second {
			break // long enough past the gate's bound
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	rep := sampler.Stop()
	if unfit == "" {
		// The mark is short-lived: the FAULT it causes fences the node
		// and records a new outcome, and the node tries again. notify's
		// log keeps every refusal.
		unfit = refusedSince(l.Nodes[to].NotifyLog, t0)
	}
	applied := wrote.Add(delay).Sub(t0) // when MASTER_DELAY lets the row in, from the crash
	record(t, fmt.Sprintf("%-16s policy %s, promotion_timeout %s, MASTER_DELAY %s on %s; %s killed: %s writable after %s (row due %.2fs after the crash, present when writable: %q); marked unfit: %q; outcome now %s; keepalived %s; both writable %d/%d",
		"lag-crash", np.Policy, np.PromotionTimeout, delay, to, from, to, fmtDur(writable), applied.Seconds(), present,
		unfit, outcome(l, to), l.KeepalivedState(to), len(rep.BothWritable), rep.Samples))
	switch {
	case !promote && writable > 0:
		t.Errorf("%s opened writes %s after the crash although it could not catch up within promotion_timeout %s", to, writable, np.PromotionTimeout)
	case !promote && unfit == "":
		t.Errorf("%s stayed read-only but notify never marked it unfit: %s\n%s", to, outcome(l, to), l.Diagnostics())
	case !promote:
	case writable == 0:
		t.Errorf("%s never became writable after the crash\n%s", to, l.Diagnostics())
	case waits && (present != "1" || writable < applied-time.Second):
		t.Errorf("reliability first: %s opened writes %s after the crash, before applying the lagged row (due after %.2fs, present %q)",
			to, writable, applied.Seconds(), present)
	case !waits && (present != "0" || writable > applied-time.Second):
		t.Errorf("availability first: %s opened writes %s after the crash (lagged row due after %.2fs, present %q), want at once",
			to, writable, applied.Seconds(), present)
	}
	if len(rep.BothWritable) > 0 {
		t.Errorf("both nodes writable in %d of %d samples", len(rep.BothWritable), rep.Samples)
	}
	// The lagged row must end up on the new master whatever the policy
	// (MASTER_DELAY still lets the relay log apply), and on both.
	if err := l.Recover(ctx, 90*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	if err := l.VerifyAll(ctx, []string{key}); err != nil {
		t.Error(err)
	}
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "never"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
}

// Under the stand-in (no reset at all: today's reality), 20 idle clients
// through the VIP stay ESTABLISHED to the old node after keepalived stops
// there. Then the lab runs the very reset notify's fence uses
// (internal/tcpreset, through tools/vgreset) on the old node, after the
// peer holds the VIP: the stale connections close. This pins down the
// technique apart from when notify fires it.
func TestStaleClientResetAfterVIPMove(t *testing.T) {
	l := needLab(t)
	if !l.Opts.StandIn {
		t.Skip("needs the stand-in notify (cmd/notify closes the old node's sockets itself)")
	}
	ctx := testCtx(t)
	const idle = 20
	c := startVIPClients(ctx, t, l, idle)
	from, to := c.from, c.to
	l.StopKeepalived(from)
	if err := l.WaitHolder(ctx, to, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := sleep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	without := c.stale(ctx, t)
	t0 := time.Now()
	out, err := l.Net.Exec(ctx, from, filepath.Join(l.Bin, "vgreset"), "--vip", VIP)
	if err != nil {
		t.Fatalf("vgreset on %s: %v\n%s", from, err, out)
	}
	left := -1
	var gone time.Duration
	for time.Since(t0) < 5*time.Second {
		if left = c.stale(ctx, t); left == 0 {
			gone = time.Since(t0)
			break
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	res := c.stop(t)
	record(t, fmt.Sprintf("%-16s %s→%s  stand-in: %d of %d client connections still ESTABLISHED to the old node 1s after the VIP moved; tcpreset run then on the old node: %d left, all gone after %s (%s)",
		"reset-after-move", from, to, without, len(c.before), left, fmtDur(gone), strings.Join(strings.Fields(string(out)), " ")))
	if without < idle {
		t.Errorf("only %d of %d connections were stale before the reset: the stand-in is not today's reality any more", without, len(c.before))
	}
	if left != 0 {
		t.Errorf("%d stale client connections survive tcpreset run after the VIP moved", left)
	}
	if err := l.Recover(ctx, 90*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	if err := l.VerifyAll(ctx, res.Acked); err != nil {
		t.Error(err)
	}
}

// refusedSince returns the first promotion refusal a notify log recorded
// after since ("" when none).
func refusedSince(notifyLog string, since time.Time) string {
	b, err := os.ReadFile(notifyLog)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		i := strings.Index(line, "PROMOTION REFUSED")
		if i < 0 || !strings.HasPrefix(line, "time=") {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if t, err := time.Parse(time.RFC3339Nano, ts); err == nil && !t.Before(since) {
			return line[i:]
		}
	}
	return ""
}
