package lab

import (
	"strconv"
	"testing"
	"time"
)

// A writer's mysqld freezes with statements in flight and thaws after its
// peer took over. The statements are still in its threads, and the
// clients still wait on their connections: through the VIP (which now
// routes to the peer, so nothing told the client its server is gone),
// through HAProxy, and straight to the node's own address as applications
// configured with node addresses do. Whatever the thawed server does with
// them, none may reach a client as acknowledged once the new writer
// acknowledged writes: the old writer is fenced before it commits them, or
// the answer never arrives.
func TestFreezeThawAcknowledgesNothingLate(t *testing.T) {
	l, ctx, from := stableLab(t)
	to := l.Nodes[from].Peer
	fromID, toID := int(l.Nodes[from].DB.Opts.ServerID), int(l.Nodes[to].DB.Opts.ServerID)
	ld, err := l.StartLoad(ctx, LoadOptions{IdleVIP: 2, IdleProxy: 2, Direct: from})
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Stop()
	// Each sleeps 0.3 s on the server: the freeze catches it mid-statement,
	// and its client waits 10 s more for the answer.
	paths := []string{"vip", "vip", "proxy", "proxy", "direct", "direct"}
	for _, p := range paths {
		if err := ld.SlowVia(0.3, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := sleep(ctx, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.ThawMySQL(from) })
	if err := l.FreezeMySQL(from); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	if err := l.WaitHolder(ctx, to, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := ld.WaitWrites(ctx, toID, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// The new writer takes writes for a while before the old one thaws.
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := l.ThawMySQL(from); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s thawed %.2fs after the freeze", from, time.Since(frozen).Seconds())
	outcome := map[string]int{}
	for range paths {
		select {
		case ev := <-ld.SlowResults():
			switch {
			case !ev.OKSlow:
				outcome["failed"]++
			default:
				outcome["acknowledged"]++
			}
			t.Logf("in-flight statement: ok=%v after %.2fs: %s", ev.OKSlow, ev.Took, ev.Msg)
		case <-time.After(20 * time.Second):
			t.Fatal("an in-flight statement had no outcome within 20 s of the thaw")
		}
	}
	// Writes go on while the thawed node is fenced.
	if err := sleep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	lr, err := ld.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if late := LateAcks(lr.Acks, fromID, toID); len(late) > 0 {
		for _, a := range late {
			t.Errorf("%s (server %d) acknowledged %q at %s, after %s had taken over", from, fromID, a.Key, a.At.Format("15:04:05.000"), to)
		}
	}
	t.Logf("in-flight statements: %v; writes acknowledged: %d", outcome, len(lr.Acks))
	byServer := map[string]int{}
	for _, a := range lr.Acks {
		byServer[strconv.Itoa(a.Server)]++
	}
	if byServer[strconv.Itoa(toID)] == 0 {
		t.Errorf("no write acknowledged by %s: the scenario did not fail over (%v)", to, byServer)
	}
	if err := l.Recover(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyAll(ctx, lr.Acked); err != nil {
		t.Error(err)
	}
}
