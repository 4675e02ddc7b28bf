package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// testConfig writes and loads a configuration; mysql is the [mysql] body.
func testConfig(t *testing.T, mysql, agent string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	// Fast test defaults, unless the test sets the key itself.
	for _, kv := range []string{"interval = \"100ms\"", "stale_after = \"600ms\"", "io_timeout = \"500ms\""} {
		if k, _, _ := strings.Cut(kv, " "); !strings.Contains(agent, k+" ") {
			agent += "\n" + kv
		}
	}
	toml := fmt.Sprintf("state_dir = %q\n[mysql]\n%s\n[agent]\n%s\n", filepath.Join(dir, "state"), mysql, agent)
	p := filepath.Join(dir, "vipguard.toml")
	if err := os.WriteFile(p, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func socketConfig(t *testing.T, s *mariadbtest.Server, agent string) *config.Config {
	return testConfig(t, fmt.Sprintf("socket = %q\nuser = \"root\"", s.Socket), agent)
}

// startServer runs the poller and one listener on 127.0.0.1 until the
// test ends.
func startServer(t *testing.T, cfg *config.Config) (*Server, string) {
	t.Helper()
	return startServerPath(t, cfg, true)
}

// startServerPath is startServer with the fast path on or off.
func startServerPath(t *testing.T, cfg *config.Config, fast bool) (*Server, string) {
	t.Helper()
	return startServerWith(t, cfg, func(s *Server) { s.NoFastPath = !fast })
}

// startServerWith is startServer with setup applied before anything runs.
func startServerWith(t *testing.T, cfg *config.Config, setup func(*Server)) (*Server, string) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	srv := NewServer(cfg, log)
	setup(srv)
	srv.Poller.PollOnce(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	pollDone := make(chan struct{})
	go func() { defer close(pollDone); srv.Poller.Run(ctx) }()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		<-served
		srv.Shutdown(time.Second)
		<-pollDone
	})
	return srv, l.Addr().String()
}

// ask sends one raw request and returns everything the server answered
// before closing.
func ask(t *testing.T, addr, req string) string {
	t.Helper()
	r, err := tryAsk(addr, req)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	return r
}

func tryAsk(addr, req string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return string(b), fmt.Errorf("%w (after %q)", err, b)
	}
	return string(b), nil
}

// head is the agent reply without its description.
func head(reply string) string {
	h, _, _ := strings.Cut(strings.TrimSuffix(reply, "\n"), " #")
	return h
}

// waitReply asks until the reply starts with want.
func waitReply(t *testing.T, addr, req, want string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		r := ask(t, addr, req)
		if head(r) == want || strings.HasPrefix(r, want) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %q answered %q, want %q", limit, req, r, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, addr, method, path string) (int, string) {
	t.Helper()
	r := ask(t, addr, method+" "+path+" HTTP/1.0\r\nHost: x\r\n\r\n")
	var code int
	if _, err := fmt.Sscanf(r, "HTTP/1.1 %d", &code); err != nil {
		t.Fatalf("%s %s: bad response %q", method, path, r)
	}
	_, body, _ := strings.Cut(r, "\r\n\r\n")
	return code, body
}

func mustExec(t *testing.T, s *mariadbtest.Server, q ...string) {
	t.Helper()
	if err := s.Exec(context.Background(), q...); err != nil {
		t.Fatal(err)
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// benchConfig is a configuration for benchmarks; the MySQL it names is
// absent, which does not matter for the cost of answering from cache.
func benchConfig(b testing.TB) *config.Config {
	dir := b.TempDir()
	toml := fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\n[agent]\nmax_conns = 4096\n", dir, filepath.Join(dir, "none.sock"))
	c, err := config.Parse([]byte(toml))
	if err != nil {
		b.Fatal(err)
	}
	return c
}
