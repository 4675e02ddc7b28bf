package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/nodestatus"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// serveOnly runs a server that polled once and never again: whatever it
// answers comes from that one poll.
func serveOnly(t *testing.T, srv *Server) string {
	t.Helper()
	srv.Poller.PollOnce(context.Background())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done; srv.Shutdown(time.Second) })
	return l.Addr().String()
}

// The document is served from the cached poll: with the poll loop not
// running, every answer shows the same, ageing state.
func TestStatusJSONFromCache(t *testing.T) {
	cfg := testConfig(t, `socket = "/nonexistent/mysqld.sock"`, "")
	srv := NewServer(cfg, slog.New(slog.DiscardHandler))
	addr := serveOnly(t, srv)
	var last float64
	for i := range 20 {
		st, err := nodestatus.Fetch(context.Background(), addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if st.Role != nodestatus.RoleUnknown || st.MySQL != nil || st.PollError == "" || st.Fit {
			t.Fatalf("unreadable server shown as %+v", st)
		}
		if i > 0 && st.PollAge < last {
			t.Fatalf("poll age went back: %v after %v (a new poll?)", st.PollAge, last)
		}
		last = st.PollAge
		if len(st.Answers) != 4 || st.Answers[0].Check != "writer" || st.Answers[0].HTTP != 503 {
			t.Fatalf("answers %+v", st.Answers)
		}
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /status.json?x=1 HTTP/1.0\r\n\r\n")
	buf := make([]byte, 512)
	n, _ := c.Read(buf)
	c.Close()
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 400 ") {
		t.Errorf("query string: %q", buf[:n])
	}
}

// The allow-list closes other clients' connections before the document.
func TestStatusJSONAllow(t *testing.T) {
	cfg := testConfig(t, `socket = "/nonexistent/mysqld.sock"`, `allow = ["192.0.2.1"]`)
	addr := serveOnly(t, NewServer(cfg, slog.New(slog.DiscardHandler)))
	_, err := nodestatus.Fetch(context.Background(), addr, time.Second)
	if err == nil || !strings.Contains(err.Error(), "allow") {
		t.Errorf("refused client: %v", err)
	}
}

// On a real pair: the promoted writer and the fenced standby.
func TestStatusJSONPair(t *testing.T) {
	a, b := mariadbtest.Pair(t, mariadbtest.PairOptions{})
	if err := a.Exec(context.Background(), "SET GLOBAL read_only = OFF"); err != nil {
		t.Fatal(err)
	}
	ca, cb := socketConfig(t, a, ""), socketConfig(t, b, "")
	now := time.Now().UTC()
	if err := state.Dir(ca.StateDir).WriteOutcome(state.Outcome{Event: "MASTER", Phase: state.PhaseDone, Role: state.RoleWriter, At: now}); err != nil {
		t.Fatal(err)
	}
	if err := state.Dir(cb.StateDir).WriteOutcome(state.Outcome{Event: "BACKUP", Phase: state.PhaseDone, Role: state.RoleStandby, At: now, FinalPosition: "gtid=1-1-1"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		srv  *Server
		role string
		ro   bool
	}{{NewServer(ca, slog.New(slog.DiscardHandler)), nodestatus.RoleWriter, false}, {NewServer(cb, slog.New(slog.DiscardHandler)), nodestatus.RoleFenced, true}} {
		st, err := nodestatus.Fetch(context.Background(), serveOnly(t, c.srv), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if st.Role != c.role || st.MySQL == nil || st.MySQL.ReadOnly != c.ro || len(st.MySQL.Replicas) != 1 || !st.Streaming() {
			t.Errorf("want %s: %+v %+v", c.role, st, st.MySQL)
		}
		if c.role == nodestatus.RoleWriter && !st.Writer() {
			t.Errorf("writer document does not read as a completed promotion: %+v", st.Notify)
		}
	}
}
