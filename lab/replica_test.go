package lab

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestReplicaFollowsTwoFailovers: a read replica replicating from the VIP
// by GTID follows the writer through two failovers in a row — kill -9 of
// the writer's mysqld, then, with the killed node back as a standby, a
// planned switchover back to it — without anyone touching it. After each,
// its channel streams from the new writer with no error and HAProxy has it
// UP as a reader; at the end it holds every acknowledged write and the
// writer's table row for row. A replica by file/position fails here: it
// asks the new writer for an offset in the old one's binlog.
func TestReplicaFollowsTwoFailovers(t *testing.T) {
	l := needLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	if l.Nodes[ReplicaHost] == nil {
		if err := l.AddReplica(ctx); err != nil {
			t.Fatalf("%v\n%s", err, l.Diagnostics())
		}
		// The scenarios after this one run the lab as they always did.
		t.Cleanup(func() {
			if err := l.RemoveReplica(context.Background()); err != nil {
				t.Errorf("removing the replica: %v", err)
			}
		})
	}
	first := mustHolder(t, l)
	second := l.Nodes[first].Peer
	if p := l.replicaProblem(ctx, first); p != "" {
		t.Fatalf("replica before the failovers: %s", p)
	}
	if err := waitReplicaReader(ctx, l); err != nil {
		t.Fatalf("before the failovers: %v", err)
	}

	sampler, err := l.StartSampler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := l.StartLoad(ctx, LoadOptions{})
	if err != nil {
		sampler.Stop()
		t.Fatal(err)
	}
	stopped := false
	// Whatever fails, the lab is left clean for the next scenario (the
	// replica is only ever read).
	defer func() {
		if !stopped {
			ld.Stop()
			sampler.Stop()
		}
		if t.Failed() {
			t.Log(l.Diagnostics())
			_ = l.Maintenance(ctx, first, false, "")
			_ = l.Maintenance(ctx, second, false, "")
			if err := l.Recover(ctx, 90*time.Second); err != nil {
				t.Errorf("lab could not recover: %v", err)
			}
		}
	}()
	if err := sleep(ctx, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	// 1: kill -9 of the writer's mysqld; back as a standby afterwards. The
	// kill lands between writes: killed mid-stream, a writer can have sent
	// its last transaction to the replica and not yet to the standby
	// (asynchronous replication promises nothing), and a replica ahead of
	// the new writer cannot follow it (error 1236, which its agentcheck
	// reports; docs/read-replicas.md). That race is not this test's
	// subject; following the VIP is. The writes resume at once.
	lr0, err := ld.Stop()
	if err != nil {
		t.Fatal(err)
	}
	acked := lr0.Acked
	if err := l.Sync(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.Nodes[ReplicaHost].DB.SyncWith(ctx, l.Nodes[first].DB, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if ld, err = l.StartLoad(ctx, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	l.KillMySQL(first)
	if err := l.WaitHolder(ctx, second, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := ld.WaitWrites(ctx, int(l.Nodes[second].DB.Opts.ServerID), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	writes1 := time.Since(t0)
	follow1, err := l.WaitReplicaFollows(ctx, second, 30*time.Second)
	if err != nil {
		t.Fatalf("after the kill of %s's mysqld: %v", first, err)
	}
	follow1 += writes1
	if err := waitReplicaReader(ctx, l); err != nil {
		t.Fatalf("after the kill of %s's mysqld: %v", first, err)
	}
	t.Logf("failover 1 (kill -9 %s): writes on %s after %.2fs, replica streaming from it after %.2fs", first, second,
		writes1.Seconds(), follow1.Seconds())
	if err := l.Recover(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}

	// 2: a planned switchover back to the node that was killed.
	t0 = time.Now()
	code, out := l.vipguardRun(ctx, second, 90*time.Second, "switchover", "--timeout", "60s")
	if code != 0 || !strings.Contains(out, "switchover done") {
		t.Fatalf("switchover on %s: exit %d\n%s", second, code, out)
	}
	if err := l.WaitHolder(ctx, first, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := ld.WaitWrites(ctx, int(l.Nodes[first].DB.Opts.ServerID), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	writes2 := time.Since(t0)
	follow2, err := l.WaitReplicaFollows(ctx, first, 30*time.Second)
	if err != nil {
		t.Fatalf("after the switchover to %s: %v", first, err)
	}
	follow2 += writes2
	t.Logf("failover 2 (switchover %s→%s): writes on %s after %.2fs, replica streaming from it after %.2fs", second, first, first,
		writes2.Seconds(), follow2.Seconds())

	if err := sleep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	lr, err := ld.Stop()
	rep := sampler.Stop()
	stopped = true
	if err != nil {
		t.Fatal(err)
	}
	lr.Acked = append(acked, lr.Acked...)
	if n := len(rep.BothWritable); n > 0 {
		t.Errorf("both nodes writable in %d of %d samples", n, rep.Samples)
	}
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyAll(ctx, lr.Acked); err != nil {
		t.Error(err)
	}
	if err := l.VerifyReplica(ctx, first, lr.Acked); err != nil {
		t.Error(err)
	}
	if p := l.replicaProblem(ctx, first); p != "" {
		t.Errorf("replica at the end: %s", p)
	}
	if err := waitReplicaReader(ctx, l); err != nil {
		t.Error(err)
	}
	record(t, fmt.Sprintf("%-16s replica %s followed kill -9 %s (streaming from %s %.2fs after the kill) and switchover %s→%s (%.2fs), acked %d, identical to the writer",
		"replica", ReplicaHost, first, second, follow1.Seconds(), second, first, follow2.Seconds(), len(lr.Acked)))
}

// waitReplicaReader waits until HAProxy has the replica UP in the reader
// backend and agentcheck there answers "reader" up, replicating, with no
// warning (HAProxy's stats show the agent's verdict, not its reason).
func waitReplicaReader(ctx context.Context, l *Lab) error {
	if _, _, err := l.WaitHAProxy(ctx, "mysql_reader/"+ReplicaHost, func(s ServerStat) bool { return s.Status == "UP" }, 20*time.Second); err != nil {
		return err
	}
	a, err := l.AgentAnswer(ctx, ReplicaHost, "reader")
	if err != nil {
		return err
	}
	if !strings.HasPrefix(a, "up ") || !strings.Contains(a, "reader: replicating") || strings.Contains(a, "WARNING") {
		return fmt.Errorf("agentcheck on %s answers %q to reader", ReplicaHost, a)
	}
	return nil
}
