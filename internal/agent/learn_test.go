package agent

import (
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
)

// askFrom sends one check from a chosen loopback address.
func askFrom(t *testing.T, from, addr, req string) {
	t.Helper()
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(c); err != nil || len(b) == 0 {
		t.Fatalf("no answer to %q: %v", req, err)
	}
}

// Hosts that send agent-checks repeatedly (HAProxy) are learned and saved
// as witnesses, on both the fast and the general path; HTTP clients
// (monitoring) and one-off agent-checks are not.
func TestLearnsAgentCheckers(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(map[bool]string{true: "fast path", false: "general path"}[fast], func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, `socket = "/nonexistent/mysqld.sock"`, "")
			srv, addr := startServerWith(t, cfg, func(s *Server) { s.NoFastPath = !fast; s.learnLoopback = true })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go srv.Learn(ctx)
			waitLearning(t, srv)
			for i := 0; i < 4; i++ {
				askFrom(t, "127.0.0.2", addr, "\n")                            // HAProxy's agent-check
				askFrom(t, "127.0.0.3", addr, "GET /metrics HTTP/1.0\r\n\r\n") // a scraper
				if i == 0 {
					askFrom(t, "127.0.0.4", addr, "writer\n") // once only
				}
				time.Sleep(700 * time.Millisecond)
			}
			want := []netip.Addr{netip.MustParseAddr("127.0.0.2")}
			deadline := time.Now().Add(5 * time.Second)
			for {
				got, err := witness.Load(state.Dir(cfg.StateDir), witness.DefaultRules)
				if err == nil && slices.Equal(got, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("saved witnesses %v (%v), want %v", got, err, want)
				}
				time.Sleep(100 * time.Millisecond)
			}
			// The gauge follows the file a moment later (saved, then counted).
			var missing []string
			for {
				m := ask(t, addr, "GET /metrics HTTP/1.0\r\n\r\n")
				missing = missing[:0]
				for _, line := range []string{`vipguard_witnesses{source="learned"} 1`, `vipguard_witnesses{source="configured"} 0`, "vipguard_unguarded 0"} {
					if !strings.Contains(m, line+"\n") {
						missing = append(missing, line)
					}
				}
				if len(missing) == 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if len(missing) > 0 {
				t.Errorf("metrics lack %q", missing)
			}
		})
	}
}

func waitLearning(t *testing.T, srv *Server) {
	t.Helper()
	for i := 0; srv.learn.Load() == nil; i++ {
		if i > 200 {
			t.Fatal("learner never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
