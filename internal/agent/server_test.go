package agent

import (
	"context"
	"database/sql"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// TestPairRoles runs the responder against a real replicating pair.
func TestPairRoles(t *testing.T) {
	a, b := mariadbtest.Pair(t, mariadbtest.PairOptions{})
	cfgA, cfgB := socketConfig(t, a, ""), socketConfig(t, b, "")
	_, addrA := startServer(t, cfgA)
	_, addrB := startServer(t, cfgB)

	// Both read-only and replicating: no writer, two readers.
	for _, addr := range []string{addrA, addrB} {
		if r := ask(t, addr, "writer\n"); head(r) != "down" || !strings.Contains(r, "read_only=ON") {
			t.Fatalf("writer on a read-only node: %q", r)
		}
		waitReply(t, addr, "reader\n", "up 100%", 2*time.Second)
	}

	// Writable without a completed promotion is not a writer.
	mustExec(t, a, "SET GLOBAL read_only=0")
	r := waitReply(t, addrA, "writer\n", "down", time.Second)
	r = waitReply(t, addrA, "writer\n", "down #down: read_only=OFF but notify has not promoted", 2*time.Second)
	dirA := state.Dir(cfgA.StateDir)
	if err := dirA.WriteOutcome(state.Outcome{Event: "MASTER", Phase: "running", Role: "writer"}); err != nil {
		t.Fatal(err)
	}
	if r = ask(t, addrA, "writer\n"); head(r) != "down" || !strings.Contains(r, "running") {
		t.Fatalf("promotion running: %q", r)
	}
	// The outcome file is read when it changes: no poll needed.
	if err := dirA.WriteOutcome(state.Outcome{Event: "MASTER", Phase: "done", Role: "writer"}); err != nil {
		t.Fatal(err)
	}
	if r = ask(t, addrA, "writer\n"); head(r) != "up 100%" {
		t.Fatalf("promoted writer: %q", r)
	}
	if code, body := httpGet(t, addrA, "GET", "/primary"); code != 200 || !strings.Contains(body, `"status":"up"`) {
		t.Fatalf("/primary on the writer: %d %s", code, body)
	}
	if code, _ := httpGet(t, addrB, "GET", "/master"); code != 503 {
		t.Fatalf("/master on the standby: %d", code)
	}
	if code, _ := httpGet(t, addrA, "GET", "/read-only"); code != 503 {
		t.Fatalf("/read-only on the writer: %d", code)
	}
	if code, body := httpGet(t, addrB, "GET", "/replica?max_lag=5"); code != 200 || !strings.Contains(body, `"lag_seconds":0`) {
		t.Fatalf("/replica on the standby: %d %s", code, body)
	}
	for _, p := range []string{"/health", "/liveness", "/readiness"} {
		if code, body := httpGet(t, addrB, "HEAD", p); code != 200 || body != "" {
			t.Fatalf("HEAD %s: %d %q", p, code, body)
		}
	}

	// A stopped SQL thread takes the standby out of the readers; it comes
	// back when fixed.
	mustExec(t, b, "STOP SLAVE SQL_THREAD")
	r = waitReply(t, addrB, "reader\n", "down", time.Second)
	if !strings.Contains(r, "SQL thread is stopped") {
		t.Fatalf("stopped SQL thread: %q", r)
	}
	if code, _ := httpGet(t, addrB, "GET", "/replica"); code != 503 {
		t.Fatalf("/replica with a stopped SQL thread: %d", code)
	}
	mustExec(t, b, "START SLAVE SQL_THREAD")
	waitReply(t, addrB, "reader\n", "up 100%", 2*time.Second)

	// Maintenance is seen by the very next check, not at the next poll.
	dirB := state.Dir(cfgB.StateDir)
	if err := dirB.SetMaintenance(true, "kernel upgrade", "test"); err != nil {
		t.Fatal(err)
	}
	if r = ask(t, addrB, "reader\n"); head(r) != "up 0%" || !strings.Contains(r, "kernel upgrade") {
		t.Fatalf("maintenance on: %q", r)
	}
	if code, _ := httpGet(t, addrB, "GET", "/replica"); code != 404 {
		t.Fatalf("/replica in maintenance (drain): %d", code)
	}
	if err := dirB.SetMaintenance(false, "", ""); err != nil {
		t.Fatal(err)
	}
	if r = ask(t, addrB, "reader\n"); head(r) != "up 100%" {
		t.Fatalf("maintenance off: %q", r)
	}

	// Metrics count what happened.
	code, body := httpGet(t, addrA, "GET", "/metrics")
	for _, want := range []string{`vipguard_agent_polls_total{result="ok"}`, `vipguard_agent_checks_total{role="writer",verdict="up"} `, "vipguard_agent_mysql_up 1", "vipguard_agent_writable 1", `vipguard_agent_up{role="writer"} 1`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}

	// A frozen server is down within the poll timeout, and at the latest
	// within the staleness bound.
	if err := a.Freeze(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r = waitReply(t, addrA, "writer\n", "down", cfgA.Agent.StaleAfter.Duration+cfgA.Agent.Interval.Duration)
	t.Logf("frozen writer answered %q after %s", r, time.Since(start).Round(time.Millisecond))
	if err := a.Thaw(); err != nil {
		t.Fatal(err)
	}
	waitReply(t, addrA, "writer\n", "up 100%", 3*time.Second)
}

// TestHungListener: the server takes TCP connections but never answers
// new ones, while an old connection still works. Polls on fresh
// connections see it.
func TestHungListener(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 3})
	p := newProxy(t, net.JoinHostPort(s.Host, strconv.Itoa(s.Port)))
	cfg := testConfig(t, "host = \"127.0.0.1\"\nport = "+strconv.Itoa(p.port())+
		"\nuser = \""+mariadbtest.CheckUser+"\"\npassword = \""+mariadbtest.CheckPassword+"\"\nconnect_timeout = \"200ms\"", "")
	_, addr := startServer(t, cfg)
	waitReply(t, addr, "readiness\n", "up", 2*time.Second)

	old, err := sql.Open("mysql", "vipguard:vipguard-pass@tcp(127.0.0.1:"+strconv.Itoa(p.port())+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	old.SetMaxOpenConns(1)
	if err := old.Ping(); err != nil {
		t.Fatal(err)
	}
	p.hang.Store(true)
	r := waitReply(t, addr, "readiness\n", "down", 2*time.Second)
	t.Logf("hung listener: %q", r)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := old.PingContext(ctx); err != nil {
		t.Fatalf("the old connection should still work: %v", err)
	}
	p.hang.Store(false)
	waitReply(t, addr, "readiness\n", "up", 2*time.Second)
}

// proxy forwards TCP to a server; with hang set it accepts connections
// and never forwards them (a wedged accept loop, as seen from a client).
type proxy struct {
	l    net.Listener
	hang atomic.Bool
	mu   sync.Mutex
	held []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.held = append(p.held, c)
			p.mu.Unlock()
			if p.hang.Load() {
				continue
			}
			go func() {
				u, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				go func() { io.Copy(u, c); u.Close() }()
				io.Copy(c, u)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.held {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

func (p *proxy) port() int { return p.l.Addr().(*net.TCPAddr).Port }

// TestOnePollPerInterval hammers the responder and counts polls on the
// server's own counters.
func TestOnePollPerInterval(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 4})
	cfg := socketConfig(t, s, "")
	srv, addr := startServer(t, cfg)
	counter, err := s.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	defer counter.Close()
	counter.SetMaxOpenConns(1) // one connection: reading the counter adds none
	conns := func() int {
		var name string
		var n int
		if err := counter.QueryRow("SHOW GLOBAL STATUS LIKE 'Connections'").Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	conns()
	polls0, conns0 := srv.Metrics.Polls(), conns()
	start := time.Now()
	var checks atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 2*time.Second {
				if head(ask(t, addr, "reader\n")) == "" {
					t.Error("empty reply")
					return
				}
				checks.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	polls, serverConns := srv.Metrics.Polls()-polls0, conns()-conns0
	intervals := float64(elapsed) / float64(cfg.Agent.Interval.Duration)
	t.Logf("%d checks in %s (%.0f/s); %d polls, %d server connections in %.1f intervals",
		checks.Load(), elapsed.Round(time.Millisecond), float64(checks.Load())/elapsed.Seconds(), polls, serverConns, intervals)
	if float64(polls) < intervals-3 || float64(polls) > intervals+2 {
		t.Fatalf("%d polls in %.1f intervals", polls, intervals)
	}
	// The two counters are read at slightly different moments: a poll in
	// flight may be counted by one and not yet by the other.
	if d := serverConns - int(polls); d < -1 || d > 1 {
		t.Fatalf("server saw %d connections for %d polls", serverConns, polls)
	}
}

// TestNoCredentialsInOutput: a failing login must not leak the password.
func TestNoCredentialsInOutput(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 5})
	const secret = "Sup3r-S3cret-pw"
	cfg := testConfig(t, "host = \"127.0.0.1\"\nport = "+strconv.Itoa(s.Port)+"\nuser = \"vipguard\"\npassword = \""+secret+"\"", "")
	_, addr := startServer(t, cfg)
	var all strings.Builder
	for _, req := range []string{"writer\n", "reader\n", "health\n", "readiness\n"} {
		all.WriteString(ask(t, addr, req))
	}
	for _, p := range []string{"/primary", "/replica", "/health", "/readiness", "/metrics"} {
		_, body := httpGet(t, addr, "GET", p)
		all.WriteString(body)
	}
	if !strings.Contains(all.String(), "Access denied") {
		t.Fatalf("expected the login failure to be reported:\n%s", all.String())
	}
	if strings.Contains(all.String(), secret) {
		t.Fatalf("password leaked:\n%s", all.String())
	}
}

// TestBadInput needs no database: the answers are "down", but what is
// tested is that nothing crashes, hangs or leaks.
func TestBadInput(t *testing.T) {
	cfg := testConfig(t, "socket = \"/nonexistent/mysqld.sock\"", "max_conns = 4")
	srv, addr := startServer(t, cfg)
	ioTimeout := cfg.Agent.IOTimeout.Duration
	baseline := runtime.NumGoroutine()

	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// closedWithin reads until the server closes c and returns what it sent.
	closedWithin := func(t *testing.T, c net.Conn, limit time.Duration) string {
		t.Helper()
		start := time.Now()
		c.SetReadDeadline(start.Add(limit + time.Second))
		b, _ := io.ReadAll(c)
		if took := time.Since(start); took > limit+200*time.Millisecond {
			t.Fatalf("closed after %s, want within %s", took, limit)
		}
		return string(b)
	}

	t.Run("garbage", func(t *testing.T) {
		if r := ask(t, addr, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n"); head(r) != "down" {
			t.Fatalf("garbage line: %q", r)
		}
	})
	t.Run("half-open", func(t *testing.T) {
		c := dial()
		defer c.Close()
		// The kernel holds a silent connection for the defer-accept time
		// before the daemon sees it (fastpath.go); then io_timeout runs.
		if r := closedWithin(t, c, deferAccept+ioTimeout); r != "" {
			t.Fatalf("silent client got %q", r)
		}
	})
	t.Run("slowloris", func(t *testing.T) {
		c := dial()
		defer c.Close()
		go func() {
			for i := 0; i < 50; i++ {
				if _, err := c.Write([]byte("G")); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		if r := closedWithin(t, c, ioTimeout); r != "" {
			t.Fatalf("slow client got %q", r)
		}
	})
	t.Run("oversized", func(t *testing.T) {
		for _, big := range []string{strings.Repeat("w", 1<<20), "GET /primary HTTP/1.1\r\nX: " + strings.Repeat("a", 1<<20) + "\r\n\r\n"} {
			c := dial()
			go func() { c.Write([]byte(big)) }()
			if r := closedWithin(t, c, ioTimeout); r != "" {
				t.Fatalf("oversized request got %q", r)
			}
			c.Close()
		}
	})
	t.Run("methods", func(t *testing.T) {
		for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
			if code, _ := httpGet(t, addr, m, "/primary"); code != 405 {
				t.Fatalf("%s: %d", m, code)
			}
		}
		if code, _ := httpGet(t, addr, "GET", "/maintenance"); code != 404 {
			t.Fatalf("GET /maintenance: %d", code)
		}
		if m, _ := state.Dir(cfg.StateDir).Maintenance(); m.On {
			t.Fatal("a network request changed the maintenance flag")
		}
	})
	t.Run("connection cap", func(t *testing.T) {
		// Connections of the subtests before must be gone: the cap is
		// counted from zero.
		for end := time.Now().Add(2 * time.Second); srv.Metrics.open.Load() != 0 && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
		// Each sends the start of a request: the kernel hands a
		// connection over only once data arrived (defer accept).
		var idle []net.Conn
		for range 4 {
			c := dial()
			c.Write([]byte("GET /"))
			idle = append(idle, c)
		}
		// Let the server take them all before the one over the cap (a
		// fixed sleep was not enough on a loaded machine).
		for end := time.Now().Add(2 * time.Second); srv.Metrics.open.Load() < 4 && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
		extra := dial()
		extra.Write([]byte("wri"))
		if r := closedWithin(t, extra, 100*time.Millisecond); r != "" {
			t.Fatalf("connection over the cap got %q", r)
		}
		extra.Close()
		for _, c := range idle {
			c.Close()
		}
		// Slots free up as the server sees the closes; then checks pass.
		deadline := time.Now().Add(2 * time.Second)
		for {
			r, err := tryAsk(addr, "liveness\n")
			if err == nil && head(r) == "up" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the cap was released: %q %v", r, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if n := srv.Metrics.rejected[rejectLimit].Load(); n == 0 {
			t.Fatal("no rejection counted")
		}
	})
	// Nothing left behind.
	deadline := time.Now().Add(2 * time.Second)
	for srv.Metrics.open.Load() != 0 || runtime.NumGoroutine() > baseline+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("leak: %d open connections, %d goroutines (baseline %d)\n%s",
				srv.Metrics.open.Load(), runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A promotion is answered at once: notify opens writes, then records the
// outcome; the new outcome brings the next poll forward, so the writer
// check says up long before the next interval (10 s here).
func TestPromotionPollsAtOnce(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ReadOnly: true})
	cfg := socketConfig(t, s, "interval = \"10s\"\nstale_after = \"30s\"")
	dir := state.Dir(cfg.StateDir)
	if err := dir.WriteOutcome(state.Outcome{Event: "BACKUP", Phase: "done", Role: "standby"}); err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, cfg)
	if r := ask(t, addr, "writer\n"); head(r) != "down" || !strings.Contains(r, "read_only=ON") {
		t.Fatalf("standby: %q", r)
	}
	// What notify's promotion does, in its order.
	mustExec(t, s, "SET GLOBAL read_only=0")
	if err := dir.WriteOutcome(state.Outcome{Event: "MASTER", Phase: "done", Role: "writer"}); err != nil {
		t.Fatal(err)
	}
	waitReply(t, addr, "writer\n", "up 100%", 3*time.Second)
}
