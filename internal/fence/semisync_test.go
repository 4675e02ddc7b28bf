package fence

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/semisync"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// semiSyncPair starts a pair with semi-sync enabled on both sides of both
// nodes, as my.cnf would, with a long timeout: a commit waiting for an
// acknowledgement that never comes stalls far longer than the
// promotions below may take.
func semiSyncPair(t *testing.T) (a, b *node) {
	t.Helper()
	args := []string{"--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-slave-enabled=ON", "--rpl-semi-sync-master-timeout=60000"}
	a, b = pair(t, mariadbtest.PairOptions{A: mariadbtest.Options{Args: args}, B: mariadbtest.Options{Args: args}})
	b.cfg.Notify.PromotionTimeout.Duration = 5 * time.Second
	return a, b
}

func semiSyncOf(t *testing.T, s *mariadbtest.Server) (probe.SemiSync, *probe.Snapshot) {
	t.Helper()
	db, err := s.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	snap, err := (&probe.Prober{Q: db, QueryTimeout: 5 * time.Second, WithSemiSync: true}).Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return *snap.SemiSync, snap
}

// sight records a's state in b's state directory as agentcheck on b does.
func sight(t *testing.T, a, b *node) semisync.Sighting {
	t.Helper()
	peer, ps := semiSyncOf(t, a.s)
	local, ls := semiSyncOf(t, b.s)
	var ch *probe.Replica
	if len(ls.Replicas) == 1 {
		ch = &ls.Replicas[0]
	}
	s := semisync.NewSighting(time.Now(), ps.ServerID, ps.Writable(), peer, semisync.SelfAcking(local, ch))
	data, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.dir().WritePeerSemiSync(data); err != nil {
		t.Fatal(err)
	}
	return s
}

// ackedWrites writes n rows on a, one commit each, and returns their ids.
func ackedWrites(t *testing.T, a *node, n int) []int64 {
	t.Helper()
	app := appDB(t, a.s)
	var ids []int64
	for i := 0; i < n; i++ {
		r, err := app.ExecContext(context.Background(), "INSERT INTO vgtest.t (v) VALUES (?)", i)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := r.LastInsertId()
		ids = append(ids, id)
	}
	return ids
}

func missing(t *testing.T, b *node, ids []int64) int {
	t.Helper()
	db, err := b.s.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	for _, id := range ids {
		var v sql.NullInt64
		if err := db.QueryRow("SELECT v FROM vgtest.t WHERE id = ?", id).Scan(&v); err != nil {
			n++
		}
	}
	return n
}

// TestRealSemiSyncCrashPromotion: the writer dies with acknowledged
// transactions in the standby's relay log, not yet applied, and the
// standby's source side on (my.cnf). Its applier would wait for the dead
// writer's acknowledgement for the whole minute-long timeout; the
// promotion switches it off first, applies everything, says semi-sync
// kept its promise, and loses no acknowledged write.
func TestRealSemiSyncCrashPromotion(t *testing.T) {
	a, b := semiSyncPair(t)
	ctx := context.Background()
	if err := a.s.Exec(ctx, "SET GLOBAL rpl_semi_sync_master_enabled=OFF"); err != nil {
		t.Fatal(err)
	}
	// Held in b's relay log: b acknowledges on receipt, applies later.
	if err := b.s.Exec(ctx, "STOP SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	if err := a.s.Exec(ctx, "SET GLOBAL rpl_semi_sync_master_enabled=ON"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "semi-sync active on a", func() bool { ss, _ := semiSyncOf(t, a.s); return ss.Active() })
	ids := ackedWrites(t, a, 30)
	if ss, _ := semiSyncOf(t, a.s); !ss.Active() || ss.Unacked != 0 {
		t.Fatalf("a's commits were not all acknowledged: %+v", ss)
	}
	s := sight(t, a, b)
	if c, why := semisync.Promise(true, &s, time.Now()); c != state.SemiSyncKept {
		t.Fatalf("sighting before the crash: %s (%s)", c, why)
	}
	a.s.Kill()
	if err := b.s.Exec(ctx, "START SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	if err := b.event(ctx, "MASTER"); err != nil {
		t.Fatalf("promotion: %v", err)
	}
	o := b.outcome(t)
	if !o.Promoted() || o.SemiSync != state.SemiSyncKept {
		t.Fatalf("outcome %+v", o)
	}
	if n := missing(t, b, ids); n != 0 {
		t.Fatalf("%d of %d acknowledged writes missing on the new writer", n, len(ids))
	}
	// No acknowledging replica: the new writer must not wait for nobody.
	if ss, _ := semiSyncOf(t, b.s); ss.SourceEnabled {
		t.Fatalf("the new writer waits for acknowledgements with no replica: %+v", ss)
	}
	if _, err := appDB(t, b.s).ExecContext(ctx, "INSERT INTO vgtest.t (v) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
}

// fallenBack crashes a after its semi-sync fell back to asynchronous
// (b connected without acknowledging), with the last sighting saying so.
func fallenBack(t *testing.T) (a, b *node) {
	t.Helper()
	a, b = semiSyncPair(t)
	ctx := context.Background()
	// Left off: the receiver reads the setting when it connects, which
	// START SLAVE does not wait for.
	if err := b.s.Exec(ctx, "SET GLOBAL rpl_semi_sync_slave_enabled=OFF", "STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"); err != nil {
		t.Fatal(err)
	}
	replicating(t, b.s)
	waitFor(t, 10*time.Second, "b connected without acknowledging", func() bool { ss, _ := semiSyncOf(t, a.s); return ss.Clients == 0 })
	if err := a.s.Exec(ctx, "SET GLOBAL rpl_semi_sync_master_timeout=200"); err != nil {
		t.Fatal(err)
	}
	ackedWrites(t, a, 3)
	if ss, _ := semiSyncOf(t, a.s); ss.SourceOn || ss.FallBacks == 0 {
		t.Fatalf("a did not fall back: %+v", ss)
	}
	s := sight(t, a, b)
	if c, _ := semisync.Promise(true, &s, time.Now()); c != state.SemiSyncFallenBack {
		t.Fatalf("sighting: %s", c)
	}
	a.s.Kill()
	return a, b
}

// TestRealSemiSyncFallenBack: reliability first refuses a promotion that
// semi-sync cannot vouch for, and says why; availability first opens and
// says so too.
func TestRealSemiSyncFallenBack(t *testing.T) {
	_, b := fallenBack(t)
	ctx := context.Background()
	err := b.event(ctx, "MASTER")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("reliability first: %v", err)
	}
	o := b.outcome(t)
	if o.Promoted() || !o.Unfit || o.SemiSync != state.SemiSyncFallenBack || !b.readOnly(t) {
		t.Fatalf("refused outcome %+v", o)
	}
	b.cfg.Notify.Policy = config.PolicyAvailability
	if err := b.event(ctx, "MASTER"); err != nil {
		t.Fatalf("availability first: %v", err)
	}
	if o := b.outcome(t); !o.Promoted() || o.SemiSync != state.SemiSyncFallenBack || o.Reason == "" || b.readOnly(t) {
		t.Fatalf("availability outcome %+v", o)
	}
}

// TestRealSemiSyncFallenBackWait: with semi_sync.fallen_back_wait, the
// promotion waits for the old writer, fences it when it comes back and
// takes its final position: nothing it acknowledged is lost.
func TestRealSemiSyncFallenBackWait(t *testing.T) {
	a, b := fallenBack(t)
	ctx := context.Background()
	b.cfg.SemiSync.FallenBackWait.Duration = 30 * time.Second
	go func() {
		time.Sleep(time.Second)
		if err := a.s.Start(ctx); err != nil {
			t.Error(err)
		}
	}()
	if err := b.event(ctx, "MASTER"); err != nil {
		t.Fatalf("promotion: %v", err)
	}
	if o := b.outcome(t); !o.Promoted() || o.SemiSync != state.SemiSyncFenced {
		t.Fatalf("outcome %+v", o)
	}
	if !a.readOnly(t) {
		t.Fatal("the old writer came back writable")
	}
}
