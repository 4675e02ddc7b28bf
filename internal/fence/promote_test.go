package fence

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/witness"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
	"github.com/vipguard/vipguard/testsupport/nettest"
)

// lagging writes rows on the writer a while b applies them with a delay,
// then crashes a (kill -9): b holds them in its relay log only.
func lagging(t *testing.T, delay int) (a, b *node, rows int) {
	t.Helper()
	a, b = pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	if err := b.s.Exec(ctx, "STOP SLAVE",
		"CHANGE MASTER TO MASTER_DELAY="+strconv.Itoa(delay), "START SLAVE"); err != nil {
		t.Fatal(err)
	}
	replicating(t, b.s)
	app := appDB(t, a.s)
	rows = 20
	for i := 0; i < rows; i++ {
		if _, err := app.ExecContext(ctx, "INSERT INTO vgtest.t (v) VALUES (?)", i); err != nil {
			t.Fatal(err)
		}
	}
	// Everything received by b before the crash.
	want, _ := a.s.Query(ctx, "SELECT @@global.gtid_binlog_pos")
	waitFor(t, 10*time.Second, "b to receive everything", func() bool { return relayHas(t, b, want) })
	a.s.Kill()
	return a, b, rows
}

// relayHas reports whether b's IO thread has received up to want.
func relayHas(t *testing.T, b *node, want string) bool {
	db, err := b.s.RootDB()
	if err != nil {
		return false
	}
	defer db.Close()
	p := probe.Prober{Q: db, QueryTimeout: 5 * time.Second}
	v, _, err := p.Version(context.Background())
	if err != nil {
		return false
	}
	reps, err := p.Replicas(context.Background(), v)
	if err != nil || len(reps) != 1 {
		return false
	}
	ok, _, err := probe.MariaDBCovers(reps[0].GTIDIOPos, want)
	return err == nil && ok
}

// Crash of the writer with the standby lagging, reliability first and a
// promotion timeout longer than the lag: the promotion waits until every
// received row is applied, then opens writes.
func TestPromoteWaitsForCatchUp(t *testing.T) {
	_, b, rows := lagging(t, 3)
	ctx := context.Background()
	if got := count(t, b.s, "SELECT COUNT(*) FROM vgtest.t"); got == rows {
		t.Fatalf("standby already has all %d rows: the test needs it lagging", rows)
	}
	b.cfg.Notify.PeerTimeout.Duration = 500 * time.Millisecond
	// A witness that answers (with a reset): the peer is the one gone.
	b.cfg.Check.Witnesses = []string{nettest.Refusing(t)}
	if err := b.event(ctx, "MASTER"); err != nil {
		t.Fatalf("promote: %v", err)
	}
	if got := count(t, b.s, "SELECT COUNT(*) FROM vgtest.t"); got != rows {
		t.Fatalf("writes opened with %d of %d rows applied", got, rows)
	}
	if b.readOnly(t) {
		t.Fatal("still read-only after a met gate")
	}
	if o := b.outcome(t); o.Role != "writer" || o.Phase != "done" || o.Unfit {
		t.Fatalf("outcome %+v", o)
	}
}

// The same crash with a promotion timeout shorter than the lag: reliability
// first stays read-only and marks the node unfit.
func TestPromoteReliabilityRefuses(t *testing.T) {
	_, b, rows := lagging(t, 30)
	ctx := context.Background()
	b.cfg.Notify.PeerTimeout.Duration = 500 * time.Millisecond
	b.cfg.Notify.PromotionTimeout.Duration = 2 * time.Second
	err := b.event(ctx, "MASTER")
	if !errors.Is(err, ErrGateNotMet) {
		t.Fatalf("got %v, want ErrGateNotMet", err)
	}
	if !b.readOnly(t) {
		t.Fatal("writes opened although the gate was not met")
	}
	o := b.outcome(t)
	if !o.Unfit || o.Role != "standby" || o.Phase != "failed" {
		t.Fatalf("outcome %+v", o)
	}
	t.Logf("refused: %s", o.Reason)
	if got := count(t, b.s, "SELECT COUNT(*) FROM vgtest.t"); got == rows {
		t.Fatalf("standby caught up (%d rows): the test proves nothing", got)
	}
}

// The peer does not answer and neither does any witness: this node is the
// one cut off, and opens nothing, whatever the policy.
func TestPromoteRefusedWhenIsolated(t *testing.T) {
	_, b, _ := lagging(t, 0)
	ctx := context.Background()
	b.cfg.Notify.PeerTimeout.Duration = 500 * time.Millisecond
	b.cfg.Notify.Policy = config.PolicyAvailability
	silent, _ := nettest.Silent(t)
	b.cfg.Check.Witnesses = []string{silent}
	err := b.event(ctx, "MASTER")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want ErrRefused", err)
	}
	if !b.readOnly(t) {
		t.Fatal("an isolated node opened writes")
	}
	if o := b.outcome(t); !o.Unfit || o.Role != "standby" || !strings.Contains(o.Reason, "this node is the one cut off") {
		t.Fatalf("outcome %+v", o)
	}
}

// Availability first opens writes at once, lag or not.
func TestPromoteAvailabilityOpens(t *testing.T) {
	_, b, rows := lagging(t, 30)
	ctx := context.Background()
	b.cfg.Notify.PeerTimeout.Duration = 500 * time.Millisecond
	b.cfg.Notify.PromotionTimeout.Duration = 60 * time.Second
	b.cfg.Notify.Policy = config.PolicyAvailability
	start := time.Now()
	if err := b.event(ctx, "MASTER"); err != nil {
		t.Fatalf("promote: %v", err)
	}
	// "At once": it must not sit out promotion_timeout like reliability.
	if took := time.Since(start); took > 30*time.Second {
		t.Fatalf("availability first waited %s (promotion_timeout 60s)", took)
	}
	t.Logf("availability first opened writes after %s", time.Since(start))
	if b.readOnly(t) {
		t.Fatal("availability first left the node read-only")
	}
	o := b.outcome(t)
	if o.Role != "writer" || o.Unfit || o.Reason == "" {
		t.Fatalf("outcome %+v (want writer with the risk in reason)", o)
	}
	if got := count(t, b.s, "SELECT COUNT(*) FROM vgtest.t"); got == rows {
		t.Fatalf("standby caught up (%d rows): the test proves nothing", got)
	}
}

// Peer alive: the promotion fences it over TCP (killing its slow INSERT),
// takes its final position and waits for it even though the SQL thread is
// stopped at first (a wait that stalls short of its target), then opens.
func TestPromoteFencesPeerAndWaitsThroughStall(t *testing.T) {
	a, b := pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	if err := b.s.Exec(ctx, "STOP SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	app := appDB(t, a.s)
	for i := 0; i < 5; i++ {
		if _, err := app.ExecContext(ctx, "INSERT INTO vgtest.t (v) VALUES (?)", i); err != nil {
			t.Fatal(err)
		}
	}
	slow := make(chan error, 1)
	go func() {
		_, err := app.ExecContext(ctx, "INSERT INTO vgtest.t (v, note) SELECT SLEEP(4), 'slow'")
		slow <- err
	}()
	waitFor(t, 5*time.Second, "the slow INSERT", func() bool {
		return count(t, a.s, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO vgtest.t%SLEEP%'") == 1
	})
	go func() {
		time.Sleep(2 * time.Second)
		if err := b.s.Exec(ctx, "START SLAVE SQL_THREAD"); err != nil {
			t.Error(err)
		}
	}()
	if err := b.event(ctx, "MASTER"); err != nil {
		t.Fatalf("promote: %v", err)
	}
	if err := <-slow; err == nil {
		t.Fatal("the slow INSERT on the old writer succeeded")
	}
	if !a.readOnly(t) {
		t.Fatal("old writer not fenced")
	}
	if b.readOnly(t) {
		t.Fatal("new writer read-only")
	}
	if got := count(t, b.s, "SELECT COUNT(*) FROM vgtest.t"); got != 5 {
		t.Fatalf("new writer has %d rows, want 5", got)
	}
	// Replication both ways stays healthy and identical after a write.
	if _, err := appDB(t, b.s).ExecContext(ctx, "INSERT INTO vgtest.t (v) VALUES (99)"); err != nil {
		t.Fatal(err)
	}
	if err := a.s.SyncWith(ctx, b.s, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if x, y := count(t, a.s, "SELECT COUNT(*) FROM vgtest.t"), count(t, b.s, "SELECT COUNT(*) FROM vgtest.t"); x != y || x != 6 {
		t.Fatalf("rows a=%d b=%d, want 6 both", x, y)
	}
	const sum = "SELECT CONCAT(COUNT(*), '/', BIT_XOR(CRC32(CONCAT_WS(',', id, v, IFNULL(note, ''))))) FROM vgtest.t"
	sa, _ := a.s.Query(ctx, sum)
	sb, _ := b.s.Query(ctx, sum)
	if sa != sb || sa == "" {
		t.Fatalf("tables differ: a %q, b %q", sa, sb)
	}
	replicating(t, a.s)
	replicating(t, b.s)
}

// The same with the shipped default (no witness configured): the proxies
// agentcheck learned are the witnesses, and a node that reaches none of
// them opens nothing.
func TestPromoteRefusedWhenCutOffFromLearnedProxies(t *testing.T) {
	_, b, _ := lagging(t, 0)
	ctx := context.Background()
	b.cfg.Notify.PeerTimeout.Duration = 500 * time.Millisecond
	b.cfg.Notify.Policy = config.PolicyAvailability
	silent, _ := nettest.Silent(t)
	_, port, _ := net.SplitHostPort(silent)
	b.cfg.Check.LearnedWitnessPort, _ = strconv.Atoi(port)
	now := time.Now()
	data, err := witness.Encode([]witness.Learned{{IP: netip.MustParseAddr("127.0.0.1"), FirstSeen: now.Add(-time.Minute), LastSeen: now, Asks: 60}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.dir().WriteLearnedWitnesses(data); err != nil {
		t.Fatal(err)
	}
	err = b.event(ctx, "MASTER")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want ErrRefused", err)
	}
	if !b.readOnly(t) {
		t.Fatal("a node cut off from the learned proxies opened writes")
	}
	if o := b.outcome(t); !o.Unfit || !strings.Contains(o.Reason, "no learned witness answered (127.0.0.1:"+port) {
		t.Fatalf("outcome %+v", o)
	}
}

// A frozen peer (SIGSTOP: the kernel accepts its connections, mysqld never
// greets) counts as unreachable after notify.peer_connect_timeout, not
// after the whole peer_timeout: with peer_timeout far longer than the
// event may take, the promotion still completes.
func TestRealFrozenPeerIsUnreachable(t *testing.T) {
	a, b := pair(t, mariadbtest.PairOptions{})
	if err := a.s.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.s.Thaw() })
	db, err := open(b.eng.peerTarget())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := b.eng.greetPeer(context.Background(), db); !errors.Is(err, errPeerSilent) {
		t.Fatalf("greeting a frozen peer: %v, want errPeerSilent", err)
	}

	b.cfg.Notify.PeerTimeout.Duration = time.Minute
	b.cfg.Check.Witnesses = []string{nettest.Refusing(t)} // the peer is the one gone
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.event(ctx, "MASTER"); err != nil {
		t.Fatalf("promotion with a frozen peer: %v", err)
	}
	if o := b.outcome(t); !o.Promoted() || b.readOnly(t) {
		t.Fatalf("outcome %+v", o)
	}

	// Thawed, it greets again: a live server is never taken for silent.
	if err := a.s.Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := b.eng.greetPeer(context.Background(), db); err != nil {
		t.Fatalf("greeting the thawed peer: %v", err)
	}
}
