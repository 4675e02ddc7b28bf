package fence

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// Notify runs fired concurrently in random orders, as keepalived does: at
// most one node is ever writable, and on each node the last event's outcome
// is the one that stands.
func TestNewestEventWins(t *testing.T) {
	a, b := pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, n := range []*node{a, b} {
		n.cfg.Notify.PromotionTimeout.Duration = 5 * time.Second
		n.eng.PollInterval = 5 * time.Millisecond
	}

	// Monitor: read a, b, a; both writable in that window is a violation.
	roDB := func(s *mariadbtest.Server) *sql.DB {
		db, err := s.RootDB()
		if err != nil {
			t.Fatal(err)
		}
		db.SetMaxOpenConns(1)
		t.Cleanup(func() { db.Close() })
		return db
	}
	dba, dbb := roDB(a.s), roDB(b.s)
	writable := func(db *sql.DB) bool {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var ro int
		if err := db.QueryRowContext(qctx, "SELECT @@global.read_only").Scan(&ro); err != nil {
			return false
		}
		return ro == 0
	}
	var violations, samples atomic.Int64
	stop := make(chan struct{})
	var monitor sync.WaitGroup
	monitor.Add(1)
	go func() {
		defer monitor.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			samples.Add(1)
			if writable(dba) && writable(dbb) && writable(dba) {
				violations.Add(1)
			}
		}
	}()

	nodes := []*node{a, b}
	var runs sync.WaitGroup
	var opened atomic.Int64
	fire := func(n *node, st string, delay time.Duration) {
		runs.Add(1)
		go func() {
			defer runs.Done()
			time.Sleep(delay)
			if err := n.event(ctx, st); err == nil && st == "MASTER" {
				opened.Add(1)
			}
		}()
	}
	fences := []string{"BACKUP", "FAULT"}
	const rounds = 12
	for r := 0; r < rounds; r++ {
		m := rng.IntN(2)
		newM, old := nodes[m], nodes[1-m]
		// keepalived: the old holder is told BACKUP/FAULT, the new one
		// MASTER; notify runs start in any order and overlap.
		fire(old, fences[rng.IntN(2)], time.Duration(rng.IntN(30))*time.Millisecond)
		fire(newM, "MASTER", time.Duration(rng.IntN(30))*time.Millisecond)
		if rng.IntN(3) == 0 {
			// A stale duplicate, as after a flap.
			fire(nodes[rng.IntN(2)], []string{"MASTER", "BACKUP"}[rng.IntN(2)], time.Duration(rng.IntN(30))*time.Millisecond)
		}
		// From overlapping runs to promotions that complete.
		time.Sleep(time.Duration(rng.IntN(1200)) * time.Millisecond)
	}
	// A last, settled round whose result must stand.
	runs.Wait()
	t.Logf("%d promotions opened writes during the storm", opened.Load())
	final := rng.IntN(2)
	fire(nodes[1-final], "BACKUP", 0)
	runs.Wait()
	fire(nodes[final], "MASTER", 0)
	runs.Wait()
	close(stop)
	monitor.Wait()
	t.Logf("%d monitor samples, %d violations", samples.Load(), violations.Load())
	if violations.Load() > 0 {
		t.Fatalf("both nodes writable in %d samples", violations.Load())
	}
	for i, n := range nodes {
		g, err := n.dir().Generation()
		if err != nil {
			t.Fatal(err)
		}
		o := n.outcome(t)
		if o.Generation != g.N || o.Event != g.Event {
			t.Errorf("node %d: outcome from gen %d (%s), last event gen %d (%s)", i, o.Generation, o.Event, g.N, g.Event)
		}
		wantWriter := i == final
		if ro := n.readOnly(t); ro == wantWriter {
			t.Errorf("node %d: read_only=%v, want writer=%v", i, ro, wantWriter)
		}
		if wantWriter && (o.Role != "writer" || o.Phase != "done") || !wantWriter && o.Role != "standby" {
			t.Errorf("node %d: outcome %+v", i, o)
		}
	}
	replicating(t, a.s)
	replicating(t, b.s)
}
