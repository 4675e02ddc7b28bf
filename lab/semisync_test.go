package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/semisync"
	"github.com/vipguard/vipguard/internal/state"
)

// semiSyncLab is a lab whose pair runs semi-sync both ways (both sides
// enabled on both nodes, timeout 10 s, as my.cnf would have it): the
// shared lab when VIPGUARD_LAB_SEMISYNC=1 made it one, else a second lab
// shared by the semi-sync scenarios, torn down with the first.
func semiSyncLab(t *testing.T) *Lab {
	t.Helper()
	if os.Getenv(SemiSyncEnv) == "1" {
		return needLab(t)
	}
	if os.Getenv(EnvSwitch) != "1" {
		t.Skipf("failover lab not run: set %s=1", EnvSwitch)
	}
	sharedMu.Lock()
	current = t
	sharedMu.Unlock()
	semiOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		l, err := Start(ctx, Options{SemiSync: true, Logf: labLogf})
		sharedMu.Lock()
		semiShared, semiErr = l, err
		sharedMu.Unlock()
	})
	if semiErr != nil {
		t.Fatalf("the semi-sync lab cannot start: %v", semiErr)
	}
	return semiShared
}

var (
	semiOnce   sync.Once
	semiShared *Lab
	semiErr    error
)

// sourceEnabled reads rpl_semi_sync_master_enabled on a node.
func (l *Lab) sourceEnabled(ctx context.Context, name string) (bool, error) {
	v, err := l.Nodes[name].DB.Query(ctx, "SELECT @@global.rpl_semi_sync_master_enabled")
	return v == "1", err
}

// waitSemiSyncRoles waits until the writer waits for acknowledgements and
// the standby does not: what notify and agentcheck keep.
func (l *Lab) waitSemiSyncRoles(ctx context.Context, writer string, limit time.Duration) error {
	standby := l.Nodes[writer].Peer
	deadline := time.Now().Add(limit)
	for {
		w, werr := l.sourceEnabled(ctx, writer)
		s, serr := l.sourceEnabled(ctx, standby)
		if werr == nil && serr == nil && w && !s {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("semi-sync roles after %s: writer %s source side %v (%v), standby %s source side %v (%v); want on, off",
				limit, writer, w, werr, standby, s, serr)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// sighting reads the last semi-sync sighting a node's agentcheck recorded.
func (l *Lab) sighting(name string) (*semisync.Sighting, error) {
	b, err := state.Dir(l.Nodes[name].StateDir).PeerSemiSync()
	if err != nil || b == nil {
		return nil, errors.Join(err, fmt.Errorf("%s: no sighting of its peer yet", name))
	}
	return semisync.ParseSighting(b)
}

// TestSemiSyncCrash: four clients write through the VIP and HAProxy to a
// semi-sync pair and the writer's mysqld is killed (kill -9). The standby
// never waited for acknowledgements (its applier would stall for the
// whole timeout on the dead writer); it promotes knowing semi-sync kept
// its promise, and every acknowledged write is on it while the old writer
// is still down; after it returns the nodes are identical. The write gap,
// side by side with the asynchronous pair's, is bench-failover's figure.
func TestSemiSyncCrash(t *testing.T) {
	l := semiSyncLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	from := mustHolder(t, l)
	if err := l.waitSemiSyncRoles(ctx, from, 20*time.Second); err != nil {
		t.Fatalf("before the crash: %v\n%s", err, l.Diagnostics())
	}
	f, _ := FaultByName("kill")
	res, err := l.RunFailover(ctx, f, Hooks{Phase: func(m string) { t.Log(m) }, Writers: 2,
		BeforeRecover: func(ctx context.Context, to string, acked []string) error {
			o, err := state.Dir(l.Nodes[to].StateDir).Outcome()
			if err != nil || o == nil || o.SemiSync != state.SemiSyncKept {
				return fmt.Errorf("%s's promotion outcome %+v (%v): want semi_sync %q", to, o, err, state.SemiSyncKept)
			}
			return l.verifyAckedOn(ctx, acked, to)
		}})
	if res.From != "" {
		record(t, "semi-sync "+res.String())
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	if err := l.waitSemiSyncRoles(ctx, res.To, 20*time.Second); err != nil {
		t.Fatalf("after the old writer rejoined: %v\n%s", err, l.Diagnostics())
	}
}

// TestSemiSyncFallenBack: the standby stops acknowledging, the writer
// falls back to asynchronous replication, and then dies. Reliability
// first (the default) refuses to promote — acknowledged writes may be
// missing — and says why; nothing opens writes until the old writer is
// back, and the pair then recovers without losing anything.
func TestSemiSyncFallenBack(t *testing.T) {
	l := semiSyncLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	from := mustHolder(t, l)
	to := l.Nodes[from].Peer
	if err := l.waitSemiSyncRoles(ctx, from, 20*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	// The standby's receiver reconnects without acknowledging; one commit
	// then waits out the writer's (shortened) timeout and it falls back.
	if err := l.Nodes[from].DB.Exec(ctx, "SET GLOBAL rpl_semi_sync_master_timeout=500"); err != nil {
		t.Fatal(err)
	}
	if err := l.Nodes[to].DB.Exec(ctx, "SET GLOBAL rpl_semi_sync_slave_enabled=OFF", "STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"); err != nil {
		t.Fatal(err)
	}
	defer l.Nodes[to].DB.Exec(context.Background(), "SET GLOBAL rpl_semi_sync_slave_enabled=ON", "STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD")
	if err := l.Nodes[from].DB.Exec(ctx, "INSERT INTO vgtest.lab_writes (k, path, server_id) VALUES ('semi-sync fall-back', 'test', @@server_id)"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := l.sighting(to)
		if err == nil {
			if c, _ := semisync.Promise(true, s, s.At); c == state.SemiSyncFallenBack {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no fallen-back sighting on %s: %+v %v\n%s", to, s, err, l.Diagnostics())
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}

	t.Logf("FAULT: kill -9 mysqld on %s after its semi-sync fell back", from)
	l.KillMySQL(from)
	// From the crash until 5 s after the refusal, whatever keepalived does
	// meanwhile, the standby stays read-only.
	var refused *state.Outcome
	samples, writable := 0, 0
	deadline = time.Now().Add(30 * time.Second)
	var quietUntil time.Time
	for refused == nil || time.Now().Before(quietUntil) {
		if ro, err := l.ReadOnly(ctx, to, 300*time.Millisecond); err == nil {
			samples++
			if !ro {
				writable++
			}
		}
		if refused == nil {
			if o, err := state.Dir(l.Nodes[to].StateDir).Outcome(); err == nil && o != nil && o.Event == "MASTER" && o.Phase == state.PhaseFailed {
				refused, quietUntil = o, time.Now().Add(5*time.Second)
			} else if time.Now().After(deadline) {
				t.Fatalf("%s did not refuse a promotion within 30s\n%s", to, l.Diagnostics())
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if refused.SemiSync != state.SemiSyncFallenBack || !refused.Unfit {
		t.Errorf("refusal %+v: want unfit, semi_sync %q", refused, state.SemiSyncFallenBack)
	}
	if writable > 0 {
		t.Errorf("%s writable in %d of %d samples with its peer down and semi-sync unable to vouch", to, writable, samples)
	}

	t.Logf("recovering: %s's mysqld back, %s acknowledging again", from, to)
	if err := l.Nodes[to].DB.Exec(ctx, "SET GLOBAL rpl_semi_sync_slave_enabled=ON", "STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"); err != nil {
		t.Fatal(err)
	}
	if err := l.Recover(ctx, 120*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	if err := l.VerifyIdentical(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyReplication(ctx); err != nil {
		t.Fatal(err)
	}
}
