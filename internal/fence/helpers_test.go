package fence

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// Peer fencing runs over TCP as this account (root logs in by socket only).
const fencerUser, fencerPass = "fencer", "fencer-pass"

type tlogWriter struct {
	t  testing.TB
	mu sync.Mutex
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// node is one side of a test pair with its own config and state dir.
type node struct {
	s   *mariadbtest.Server
	cfg *config.Config
	eng *Engine
}

func newNode(t *testing.T, name string, s, peer *mariadbtest.Server) *node {
	t.Helper()
	ctx := context.Background()
	if err := s.Exec(ctx, "SET SESSION sql_log_bin=0",
		fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s'", fencerUser, fencerPass),
		fmt.Sprintf("GRANT ALL ON *.* TO '%s'@'%%'", fencerUser)); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.MySQL.Socket, cfg.MySQL.Host, cfg.MySQL.User = s.Socket, "", "root"
	cfg.Peer.Host, cfg.Peer.Port = peer.Host, peer.Port
	cfg.Peer.User, cfg.Peer.Password = fencerUser, fencerPass
	cfg.Notify.PromotionTimeout.Duration = 10 * time.Second
	log := slog.New(slog.NewTextHandler(&tlogWriter{t: t}, nil)).With("node", name)
	return &node{s: s, cfg: cfg, eng: &Engine{Cfg: cfg, Log: log}}
}

func (n *node) dir() state.Dir { return state.Dir(n.cfg.StateDir) }

// event bumps and handles one event, as one notify process would.
func (n *node) event(ctx context.Context, st string) error {
	ev := Event{Type: "INSTANCE", Name: "VI_1", State: st, Priority: 100}
	gen, err := n.eng.Bump(ctx, ev)
	if err != nil {
		return err
	}
	return n.eng.Handle(ctx, ev, gen)
}

func (n *node) readOnly(t testing.TB) bool {
	t.Helper()
	v, err := n.s.Query(context.Background(), "SELECT @@global.read_only")
	if err != nil {
		t.Fatal(err)
	}
	return v == "1"
}

// readOnlyPolled is readOnly for polls that race a fence of this server: the
// fence kills every client thread, the poll's own included, so an error
// means "not yet" rather than a failed test.
func (n *node) readOnlyPolled() bool {
	v, err := n.s.Query(context.Background(), "SELECT @@global.read_only")
	return err == nil && v == "1"
}

func (n *node) outcome(t testing.TB) *state.Outcome {
	t.Helper()
	o, err := n.dir().Outcome()
	if err != nil || o == nil {
		t.Fatalf("outcome: %v %v", o, err)
	}
	return o
}

func count(t testing.TB, s *mariadbtest.Server, q string) int {
	t.Helper()
	v, err := s.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(v, &n)
	return n
}

// pair starts a replicating pair with a writer a and table vgtest.t.
func pair(t *testing.T, po mariadbtest.PairOptions) (*node, *node) {
	t.Helper()
	sa, sb := mariadbtest.Pair(t, po)
	a, b := newNode(t, "a", sa, sb), newNode(t, "b", sb, sa)
	ctx := context.Background()
	if err := sa.Exec(ctx, "SET GLOBAL read_only=OFF",
		"CREATE TABLE vgtest.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT, note VARCHAR(40))"); err != nil {
		t.Fatal(err)
	}
	if err := sb.SyncWith(ctx, sa, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func appDB(t testing.TB, s *mariadbtest.Server) *sql.DB {
	db, err := s.DB(mariadbtest.AppUser, mariadbtest.AppPassword)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// waitFor polls cond until it holds or the limit passes.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func replicating(t testing.TB, s *mariadbtest.Server) {
	t.Helper()
	if err := s.WaitReplicating(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// idleSession opens an application session on s that stays idle until the
// test ends: a client a fence must end.
func idleSession(t testing.TB, s *mariadbtest.Server) {
	t.Helper()
	c, err := appDB(t, s).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.PingContext(context.Background()); err != nil {
		t.Fatal(err)
	}
}
