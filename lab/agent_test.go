package lab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// agentInter is the reader backend's agent-inter in examples/haproxy/haproxy.cfg
// (the writer's is 200ms): an upper bound for both.
const agentInter = time.Second

// The lab's HAProxy runs examples/haproxy/haproxy.cfg: both nodes in the
// writer backend, checked by agentcheck ("writer"). keepalived is stopped on
// the writer, its mysqld staying up (the stand-in notify sets read_only=ON
// there, the peer is promoted): writes through HAProxy reach the new writer
// within a few agent intervals of it becoming writable, and the sessions
// HAProxy held to the old writer are shut down (on-marked-down
// shutdown-sessions), not left on a read-only node.
func TestAgentWriterFailover(t *testing.T) {
	l, ctx, from := stableLab(t)
	to := l.Nodes[from].Peer
	fromID, toID := int(l.Nodes[from].DB.Opts.ServerID), int(l.Nodes[to].DB.Opts.ServerID)
	const idle = 5
	ld, err := l.StartLoad(ctx, LoadOptions{IdleProxy: idle})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_, _ = ld.Stop()
		}
		if err := l.Recover(ctx, 90*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, l.Diagnostics())
		}
	}()
	if n, err := l.ProxySessions(ctx, from, mariadbtest.AppUser); err != nil || n < idle+1 {
		t.Fatalf("sessions through HAProxy on %s before the failover: %d (%v), want at least %d", from, n, err, idle+1)
	}

	// HAProxy's view every 100 ms: how often did it have two writers UP?
	hctx, hstop := context.WithCancel(ctx)
	var hmu sync.Mutex
	var hsamples, hboth int
	hdone := make(chan struct{})
	go func() {
		defer close(hdone)
		for range 600 {
			if st, err := l.HAProxyStat(); err == nil {
				hmu.Lock()
				hsamples++
				if st["mysql_writer/db1"].Status == "UP" && st["mysql_writer/db2"].Status == "UP" {
					hboth++
				}
				hmu.Unlock()
			}
			if sleep(hctx, 100*time.Millisecond) != nil {
				return
			}
		}
	}()

	t0 := time.Now()
	l.StopKeepalived(from)
	var writable time.Duration
	for time.Since(t0) < 20*time.Second {
		if ro, err := l.ReadOnly(ctx, to, 300*time.Millisecond); err == nil && !ro {
			writable = time.Since(t0)
			break
		}
		if err := sleep(ctx, 25*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if writable == 0 {
		t.Fatalf("%s not writable within 20s of stopping keepalived on %s\n%s", to, from, l.Diagnostics())
	}
	base := ld.Last()
	var proxyBack time.Duration
	for time.Since(t0) < writable+15*time.Second {
		if e := ld.Last(); e.Server["proxy"] == toID && e.OK["proxy"] > base.OK["proxy"] {
			proxyBack = time.Since(t0)
			break
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if proxyBack == 0 {
		t.Fatalf("no write through HAProxy reached %s within 15s of it becoming writable (last %v)\nhaproxy: %s\n%s",
			to, ld.Last().LastErr, l.HAProxyView(), l.Diagnostics())
	}
	// The old writer is out of the writer backend ...
	if _, _, err := l.WaitHAProxy(ctx, "mysql_writer/"+from, func(s ServerStat) bool { return IsDown(s.Status) }, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	down := time.Since(t0)
	// ... and HAProxy closed the sessions it held there.
	var left int
	var closed time.Duration
	for time.Since(t0) < down+5*time.Second {
		if left, err = l.ProxySessions(ctx, from, mariadbtest.AppUser); err == nil && left == 0 {
			closed = time.Since(t0)
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	hstop()
	<-hdone
	res, err := ld.Stop()
	stopped = true
	if err != nil {
		t.Fatal(err)
	}
	hmu.Lock()
	both, samples := hboth, hsamples
	hmu.Unlock()
	record(t, fmt.Sprintf("%-16s %s→%s  %s writable %.2fs after keepalived stop on %s; HAProxy writes on it %.2fs later; %s DOWN in HAProxy's writer backend at %.2fs, its proxy sessions all closed at %.2fs; two writers UP in HAProxy in %d/%d samples; idle proxy conns at the end %v",
		"agent-writer", from, to, to, writable.Seconds(), from, (proxyBack-writable).Seconds(), from, down.Seconds(), closed.Seconds(), both, samples, res.Summary.Idle))
	if limit := AgentInterval + 2*agentInter; proxyBack-writable > limit {
		t.Errorf("writes through HAProxy reached %s %.2fs after it became writable, want within %s (agentcheck poll + 2 agent intervals)",
			to, (proxyBack - writable).Seconds(), limit)
	}
	if closed == 0 {
		t.Errorf("%d sessions through HAProxy still open on the old writer %s 5s after HAProxy marked it down", left, from)
	} else if closed-down > time.Second {
		t.Errorf("sessions on the old writer %s closed %.2fs after it was marked down, want at once (shutdown-sessions)", from, (closed - down).Seconds())
	}
	if n := res.Summary.Idle[strconv.Itoa(fromID)]; n > 0 {
		t.Errorf("%d idle connections through HAProxy still reach the old writer %s: %v", n, from, res.Summary.Idle)
	}
	if len(res.Errors) > 0 {
		t.Errorf("load generator errors: %s", strings.Join(res.Errors, "; "))
	}
	if err := l.Recover(ctx, 90*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	if err := l.VerifyAll(ctx, res.Acked); err != nil {
		t.Error(err)
	}
}

// agentcheck maint on (on the standby) drains it in HAProxy's reader
// backend: weight 0, not down, so open sessions finish; off brings it back
// by itself. The writer is untouched.
func TestAgentMaintenanceDrain(t *testing.T) {
	l, ctx, h := stableLab(t)
	standby := l.Nodes[h].Peer
	defer func() {
		if err := l.Recover(ctx, 60*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, l.Diagnostics())
		}
	}()
	if err := l.AgentMaint(ctx, standby, true, "lab: drain"); err != nil {
		t.Fatal(err)
	}
	drained, took, err := l.WaitHAProxy(ctx, "mysql_reader/"+standby, func(s ServerStat) bool {
		return s.Weight == "0" && !IsDown(s.Status)
	}, 3*agentInter)
	if err != nil {
		t.Fatalf("maintenance on %s: %v", standby, err)
	}
	ans, err := l.AgentAnswer(ctx, standby, "reader")
	if err != nil || !strings.HasPrefix(ans, "up 0%") {
		t.Errorf("agentcheck on %s in maintenance answers %q (%v), want \"up 0%%\"", standby, ans, err)
	}
	if st, _ := l.HAProxyServers(); st["mysql_writer/"+h] != "UP" {
		t.Errorf("writer %s is %q in HAProxy while the standby drains", h, st["mysql_writer/"+h])
	}
	if err := l.AgentMaint(ctx, standby, false, ""); err != nil {
		t.Fatal(err)
	}
	_, back, err := l.WaitHAProxy(ctx, "mysql_reader/"+standby, func(s ServerStat) bool {
		return s.Status == "UP" && s.Weight == "100"
	}, 3*agentInter)
	if err != nil {
		t.Fatalf("maintenance off on %s: %v", standby, err)
	}
	record(t, fmt.Sprintf("%-16s standby %s: drained in HAProxy %.2fs after agentcheck maint on (status %s, weight %s, agent %q); back at weight 100 %.2fs after off",
		"agent-maint", standby, took.Seconds(), drained.Status, drained.Weight, drained.Agent, back.Seconds()))
}

// mysqld SIGSTOPped on the standby: agentcheck answers down within its
// staleness bound (a frozen server never keeps a stale "up"), and HAProxy
// takes the node out of the reader backend at its next agent check.
func TestAgentFrozenMySQLDown(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	standby := l.Nodes[mustHolder(t, l)].Peer
	defer func() {
		if err := l.Recover(ctx, 60*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, l.Diagnostics())
		}
	}()
	if ans, err := l.AgentAnswer(ctx, standby, "reader"); err != nil || !strings.HasPrefix(ans, "up") {
		t.Fatalf("agentcheck on %s answers %q (%v) before the freeze, want up", standby, ans, err)
	}
	t0 := time.Now()
	if err := l.FreezeMySQL(standby); err != nil {
		t.Fatal(err)
	}
	var agentDown time.Duration
	ans := ""
	for time.Since(t0) < 3*AgentStaleAfter {
		if a, err := l.AgentAnswer(ctx, standby, "reader"); err == nil {
			if ans = a; strings.HasPrefix(a, "down") {
				agentDown = time.Since(t0)
				break
			}
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	hap, _, herr := l.WaitHAProxy(ctx, "mysql_reader/"+standby, func(s ServerStat) bool { return IsDown(s.Status) }, 3*AgentStaleAfter)
	hapDown := time.Since(t0)
	if err := l.ThawMySQL(standby); err != nil {
		t.Fatal(err)
	}
	record(t, fmt.Sprintf("%-16s standby %s: agentcheck answers down %.2fs after SIGSTOP (%q); HAProxy reader DOWN at %.2fs (agent %q); bound stale_after %s",
		"agent-freeze", standby, agentDown.Seconds(), ans, hapDown.Seconds(), hap.Agent, AgentStaleAfter))
	if agentDown == 0 || agentDown > AgentStaleAfter+500*time.Millisecond {
		t.Errorf("agentcheck on frozen %s answered %q for %.2fs, want down within stale_after %s", standby, ans, time.Since(t0).Seconds(), AgentStaleAfter)
	}
	if herr != nil || hapDown > AgentStaleAfter+agentInter+time.Second {
		t.Errorf("HAProxy reader %s not DOWN within stale_after + agent-inter: %v (%.2fs)", standby, herr, hapDown.Seconds())
	}
}
