package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/state"
)

func TestAllowed(t *testing.T) {
	list := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("198.51.100.7/32")}
	for _, tc := range []struct {
		list []netip.Prefix
		addr string
		ok   bool
	}{
		{nil, "203.0.113.9", true},
		{list, "192.0.2.77", true},
		{list, "::ffff:192.0.2.77", true}, // IPv4 client of a dual-stack socket
		{list, "198.51.100.7", true},
		{list, "198.51.100.8", false},
		{list, "127.0.0.1", false},
		{list, "2001:db8::1", true},
		{list, "2001:db9::1", false},
		{list, "::1", false},
		{[]netip.Prefix{netip.MustParsePrefix("fe80::/10")}, "fe80::1%eth0", true},
	} {
		if got := allowed(tc.list, netip.MustParseAddr(tc.addr)); got != tc.ok {
			t.Errorf("%v %s: got %v", tc.list, tc.addr, got)
		}
	}
	if ip, ok := sockaddrIP(&syscall.SockaddrInet4{Addr: [4]byte{192, 0, 2, 1}}); !ok || ip.String() != "192.0.2.1" {
		t.Fatal(ip, ok)
	}
	if _, ok := sockaddrIP(&syscall.SockaddrUnix{Name: "x"}); ok {
		t.Fatal("unix sockaddr taken as an IP")
	}
}

// A client outside agent.allow is closed at accept, unanswered, on both
// paths, and counted; a reload that lets it in makes it answered.
func TestAllowListRefuses(t *testing.T) {
	for _, fast := range []bool{true, false} {
		name := map[bool]string{true: "fast path", false: "general path"}[fast]
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t, "socket = \"/nonexistent/mysqld.sock\"", "allow = [\"192.0.2.0/24\", \"2001:db8::1\"]")
			srv, addr := startServerPath(t, cfg, fast)
			for _, req := range []string{"liveness\n", "GET /metrics HTTP/1.0\r\n\r\n"} {
				if r, _ := tryAsk(addr, req); r != "" {
					t.Fatalf("%q from a refused client answered %q", req, r)
				}
			}
			if n := srv.allowMetrics.refused.Load(); n != 2 {
				t.Fatalf("refused counter %d, want 2", n)
			}
			open := *cfg
			open.Agent.Allow = []string{"192.0.2.0/24", "127.0.0.0/8"}
			srv.SetConfig(&open)
			if r := ask(t, addr, "liveness\n"); !strings.HasPrefix(r, "up") {
				t.Fatalf("allowed client: %q", r)
			}
			code, body := httpGet(t, addr, "GET", "/metrics")
			if code != 200 || !strings.Contains(body, "vipguard_agent_connections_refused_total 2\n") {
				t.Fatalf("/metrics %d:\n%s", code, body)
			}
		})
	}
}

// A FIFO (or a symlink) planted in state_dir for the maintenance flag and
// notify's outcome wedges nothing: /liveness answers, the roles answer
// down (maintenance unreadable reads as on), and the watchdog self-check
// passes.
func TestStateFIFOKeepsAnswering(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(map[bool]string{true: "fast path", false: "general path"}[fast], func(t *testing.T) {
			cfg := testConfig(t, "socket = \"/nonexistent/mysqld.sock\"", "")
			if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"maintenance", "outcome.json"} {
				if err := syscall.Mkfifo(filepath.Join(cfg.StateDir, name), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			srv, addr := startServerPath(t, cfg, fast)
			for i := 0; i < 3; i++ {
				if r := ask(t, addr, "liveness\n"); !strings.HasPrefix(r, "up") {
					t.Fatalf("liveness: %q", r)
				}
				if code, _ := httpGet(t, addr, "GET", "/liveness"); code != 200 {
					t.Fatalf("/liveness: %d", code)
				}
				if r := ask(t, addr, "writer\n"); head(r) != "down" {
					t.Fatalf("writer: %q", r)
				}
			}
			if err := srv.Answering(time.Second); err != nil {
				t.Fatalf("self-check: %v", err)
			}
		})
	}
}

// The watchdog's self-check fails while answers do not come: a state read
// that hangs (a hung filesystem, say), or an accept loop stuck on one
// connection.
func TestAnsweringSelfCheck(t *testing.T) {
	cfg := testConfig(t, "socket = \"/nonexistent/mysqld.sock\"", "")
	srv, _ := startServer(t, cfg)
	if err := srv.Answering(time.Second); err != nil {
		t.Fatalf("healthy: %v", err)
	}
	release := make(chan struct{})
	defer close(release)
	f := srv.files.Load()
	f.maint.mu.Lock()
	f.maint.loaded = false // force a read
	f.maint.load = func() (m state.Maintenance, err error) { <-release; return m, nil }
	f.maint.mu.Unlock()
	if err := srv.Answering(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "took longer") {
		t.Fatalf("hung read: %v", err)
	}
	if err := srv.Answering(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "has not returned") {
		t.Fatalf("second check while the first hangs: %v", err)
	}

	srv2, _ := startServer(t, testConfig(t, "socket = \"/nonexistent/mysqld.sock\"", ""))
	var stuck atomic.Int64
	stuck.Store(time.Now().Add(-time.Second).UnixNano())
	srv2.trackBusy(&stuck, true)
	if err := srv2.Answering(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "accept loop") {
		t.Fatalf("stuck accept loop: %v", err)
	}
}
