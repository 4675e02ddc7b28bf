package fence

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/tcpreset"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// The duplicate-key incident: a slow autocommit INSERT running on the writer
// when it is fenced must be killed and gone before read_only is confirmed,
// so it can never commit after the peer took over.
func TestFenceKillsSlowInsert(t *testing.T) {
	a, b := pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	app := appDB(t, a.s)
	// An idle session too: it must be killed, not waited for by anything.
	idle, err := app.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := idle.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() {
		_, err := app.ExecContext(ctx, "INSERT INTO vgtest.t (v, note) SELECT SLEEP(4), 'slow'")
		slow <- err
	}()
	waitFor(t, 5*time.Second, "the slow INSERT to run", func() bool {
		return count(t, a.s, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO vgtest.t%'") == 1
	})

	start := time.Now()
	err = a.event(ctx, "BACKUP")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("fence: %v", err)
	}
	t.Logf("fence with a running slow INSERT took %s", took)
	select {
	case err := <-slow:
		if err == nil {
			t.Fatal("the slow INSERT succeeded: it was not killed")
		}
		t.Logf("slow INSERT client got: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("slow INSERT client never returned")
	}
	if !a.readOnly(t) {
		t.Fatal("read_only is off after the fence")
	}
	if n := count(t, a.s, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'app'"); n != 0 {
		t.Fatalf("%d app sessions left after the fence", n)
	}
	// Nothing of the killed statement may appear later either.
	time.Sleep(4 * time.Second)
	if n := count(t, a.s, "SELECT COUNT(*) FROM vgtest.t"); n != 0 {
		t.Fatalf("the killed INSERT left %d rows", n)
	}
	o := a.outcome(t)
	if o.Event != "BACKUP" || o.Phase != "done" || o.Role != "standby" || o.Unfit || o.Position == nil || o.Position.GTID == "" {
		t.Fatalf("outcome %+v", o)
	}
	gtid, _ := a.s.Query(ctx, "SELECT @@global.gtid_binlog_pos")
	if o.Position.GTID != gtid {
		t.Fatalf("recorded position %q, server at %q", o.Position.GTID, gtid)
	}
	replicating(t, a.s)
	replicating(t, b.s)
}

// Step 5: replication stopped on the fenced node is restarted and verified.
func TestFenceRestartsReplication(t *testing.T) {
	a, _ := pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	if err := a.s.Exec(ctx, "STOP SLAVE"); err != nil {
		t.Fatal(err)
	}
	if err := a.event(ctx, "FAULT"); err != nil {
		t.Fatalf("fence: %v", err)
	}
	if o := a.outcome(t); o.Unfit || o.Phase != "done" {
		t.Fatalf("outcome %+v", o)
	}
	io, _ := a.s.Query(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND IN ('Slave_IO', 'Slave_SQL')")
	if io != "2" {
		t.Fatalf("replication threads after the fence: %s, want 2", io)
	}
}

// A replication that cannot be restarted marks the node unfit: it
// must never look healthy while not replicating.
func TestFenceUnfitWhenReplicationBroken(t *testing.T) {
	a, b := pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	a.cfg.Notify.ReplicationTimeout.Duration = 2 * time.Second
	// A row only a has, then the same key written on b: a's SQL thread
	// stops on a duplicate key and START SLAVE cannot mend that.
	if err := a.s.Exec(ctx, "SET SESSION sql_log_bin=0", "INSERT INTO vgtest.t (id, v) VALUES (1000, 1)"); err != nil {
		t.Fatal(err)
	}
	if err := b.s.Exec(ctx, "SET GLOBAL read_only=OFF", "INSERT INTO vgtest.t (id, v) VALUES (1000, 2)", "SET GLOBAL read_only=ON"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a's SQL thread to stop", func() bool {
		return count(t, a.s, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND = 'Slave_SQL'") == 0
	})
	err := a.event(ctx, "BACKUP")
	if err == nil {
		t.Fatal("fence succeeded with replication broken")
	}
	o := a.outcome(t)
	if !o.Unfit || o.Phase != "failed" || o.Reason == "" {
		t.Fatalf("outcome %+v, want unfit", o)
	}
	t.Logf("reason: %s", o.Reason)
	if !a.readOnly(t) {
		t.Fatal("not read-only")
	}
}

// SIGTERM (ctx cancelled) during a promotion waiting at its gate leaves the
// node read-only and not half-promoted.
func TestPromoteInterruptedStaysReadOnly(t *testing.T) {
	a, b := pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	if err := b.s.Exec(ctx, "STOP SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	if _, err := appDB(t, a.s).ExecContext(ctx, "INSERT INTO vgtest.t (v) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() { res <- b.event(sctx, "MASTER") }()
	waitFor(t, 10*time.Second, "the promotion to reach its gate", func() bool {
		// The peer fence ran: a is read-only.
		return a.readOnlyPolled()
	})
	time.Sleep(300 * time.Millisecond)
	cancel()
	err := <-res
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
	if !b.readOnly(t) || !a.readOnly(t) {
		t.Fatal("a node is writable after an interrupted promotion")
	}
	if o := b.outcome(t); o.Role != "standby" {
		t.Fatalf("outcome %+v", o)
	}
}

// MariaDB users with READ_ONLY ADMIN write through read_only: the fence
// kills them too, and the recorded position is the one after their last
// write.
func TestFenceKillsReadOnlyAdmin(t *testing.T) {
	a, _ := pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	if err := a.s.Exec(ctx, "SET SESSION sql_log_bin=0",
		"CREATE USER 'dba'@'%' IDENTIFIED BY 'dba-pass'", "GRANT ALL PRIVILEGES ON *.* TO 'dba'@'%'"); err != nil {
		t.Fatal(err)
	}
	db, err := a.s.DB("dba", "dba-pass")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Proof that the account bypasses read_only.
	if err := a.s.Exec(ctx, "SET GLOBAL read_only=ON"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO vgtest.t (v, note) VALUES (0, 'admin')"); err != nil {
		t.Fatalf("the admin account cannot write under read_only, the test proves nothing: %v", err)
	}
	if err := a.s.Exec(ctx, "SET GLOBAL read_only=OFF"); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() {
		for i := 1; ; i++ {
			if _, err := conn.ExecContext(ctx, "INSERT INTO vgtest.t (v, note) VALUES (?, 'admin')", i); err != nil {
				stopped <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if err := a.event(ctx, "BACKUP"); err != nil {
		t.Fatalf("fence: %v", err)
	}
	select {
	case err := <-stopped:
		t.Logf("admin writer stopped by: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the admin writer still writes after the fence")
	}
	o := a.outcome(t)
	gtid, _ := a.s.Query(ctx, "SELECT @@global.gtid_binlog_pos")
	if o.Position == nil || o.Position.GTID != gtid {
		t.Fatalf("recorded %+v, server at %q: writes after the final position", o.Position, gtid)
	}
}

// A FAULT on a frozen server cuts its TCP sessions (but the peer's and the
// VIP's) while the fence waits for it; a server that greets is left to the
// fence alone.
func TestFenceCutsHungServersClients(t *testing.T) {
	a, _ := pair(t, mariadbtest.PairOptions{})
	a.cfg.Peer.Host = "192.0.2.12"
	a.cfg.VIP.Address = "192.0.2.10"
	a.cfg.MySQL.Port = 3307
	var mu sync.Mutex
	var cuts []tcpreset.Sessions
	a.eng.CutClients = func(s tcpreset.Sessions) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		cuts = append(cuts, s)
		return 2, nil
	}
	ctx := context.Background()
	if err := a.event(ctx, "BACKUP"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n := len(cuts)
	mu.Unlock()
	if n != 0 {
		t.Fatalf("a server that answers had its sessions cut: %+v", cuts)
	}

	if err := a.s.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.s.Thaw() })
	res := make(chan error, 1)
	go func() { res <- a.event(ctx, "FAULT") }()
	waitFor(t, 10*time.Second, "the sessions of the frozen server to be cut", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(cuts) > 0
	})
	if err := a.s.Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatalf("fence after the thaw: %v", err)
	}
	want := tcpreset.Sessions{Port: 3307, SpareFrom: []netip.Addr{netip.MustParseAddr("192.0.2.12")},
		SpareTo: []netip.Addr{netip.MustParseAddr("192.0.2.10")}}
	mu.Lock()
	defer mu.Unlock()
	if len(cuts) != 1 || !reflect.DeepEqual(cuts[0], want) {
		t.Fatalf("cuts %+v, want one of %+v", cuts, want)
	}
	if !a.readOnly(t) {
		t.Fatal("the thawed server is writable after its fence")
	}
}
