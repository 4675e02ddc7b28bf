package agent

import (
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/state"
)

// The fast path and the general path must give the very same answers.
func TestFastPathSameAnswers(t *testing.T) {
	cfg := testConfig(t, "socket = \"/nonexistent/mysqld.sock\"", "")
	if err := state.Dir(cfg.StateDir).SetMaintenance(true, "fast path test", "test"); err != nil {
		t.Fatal(err)
	}
	_, fast := startServerPath(t, cfg, true)
	_, general := startServerPath(t, cfg, false)
	// The state's age is the only thing that may differ.
	age := regexp.MustCompile(`"state_age_seconds":[0-9.]+|[0-9.]+m?s ago`)
	reqs := []string{
		"writer\n", "reader max_lag=5\n", "health\r\n", "liveness\n", "readiness\n", "bogus\n", "\n",
		"GET /primary HTTP/1.0\r\n\r\n", "HEAD /replica?max_lag=2 HTTP/1.1\r\nHost: x\r\n\r\n",
		"OPTIONS /health HTTP/1.0\r\n\r\n", "POST /primary HTTP/1.0\r\n\r\n", "GET /nope HTTP/1.0\r\n\r\n",
		"GET /replica?max_lag=-1 HTTP/1.0\r\n\r\n", "GET /liveness HTTP/1.1\r\nUser-Agent: \"q\\\r\n\r\n",
	}
	for _, req := range reqs {
		a, err := tryAsk(fast, req)
		if err != nil {
			t.Fatalf("fast path, %q: %v", req, err)
		}
		b, err := tryAsk(general, req)
		if err != nil {
			t.Fatalf("general path, %q: %v", req, err)
		}
		if age.ReplaceAllString(a, "AGE") != age.ReplaceAllString(b, "AGE") {
			t.Errorf("%q:\nfast:    %q\ngeneral: %q", req, a, b)
		}
		if a == "" {
			t.Errorf("%q: no answer", req)
		}
	}
}

// What the fast path cannot finish at once goes to the general path and is
// still answered correctly.
func TestFastPathHandOffs(t *testing.T) {
	cfg := testConfig(t, "socket = \"/nonexistent/mysqld.sock\"", "")
	srv, addr := startServer(t, cfg)

	t.Run("request in pieces", func(t *testing.T) {
		before := srv.Metrics.slow[slowPartial].Load()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		c.Write([]byte("GET /primary HT"))
		// The rest goes only once the first piece was handed on.
		for end := time.Now().Add(3 * time.Second); srv.Metrics.slow[slowPartial].Load() == before; {
			if time.Now().After(end) {
				t.Fatal("the first piece of the request was not handed to the general path")
			}
			time.Sleep(5 * time.Millisecond)
		}
		c.Write([]byte("TP/1.0\r\n\r\n"))
		b, err := io.ReadAll(c)
		if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 503 ") {
			t.Fatalf("answer %q, %v", b, err)
		}
	})
	t.Run("bytes after the request", func(t *testing.T) {
		before := srv.Metrics.slow[slowExtra].Load()
		// One answer, then a clean close: no reset destroys it.
		for range 20 {
			r, err := tryAsk(addr, "writer\nreader\nhealth\n")
			if err != nil || strings.Count(r, "\n") != 1 || !strings.HasPrefix(r, "down") {
				t.Fatalf("answer %q, %v", r, err)
			}
		}
		if srv.Metrics.slow[slowExtra].Load() == before {
			t.Fatal("pipelined requests were not handed off")
		}
	})
	t.Run("answer taken in part", func(t *testing.T) {
		// The socket takes 7 bytes; the general path sends the rest.
		srv, addr := startServerWith(t, cfg, func(s *Server) {
			s.send = func(fd int, b []byte) (int, error) { return syscall.Write(fd, b[:min(7, len(b))]) }
		})
		short, partial := srv.Metrics.slow[slowShortSend].Load(), srv.Metrics.slow[slowPartial].Load()
		for i := range 20 {
			req, want := "writer\n", "down #down: "
			if i%2 == 1 {
				req, want = "GET /primary HTTP/1.0\r\n\r\n", "HTTP/1.1 503 Service Unavailable\r\n"
			}
			r, err := tryAsk(addr, req)
			if err != nil || !strings.HasPrefix(r, want) || !strings.HasSuffix(r, "\n") {
				t.Fatalf("%q: %q, %v", req, r, err)
			}
			if i%2 == 1 {
				head, body, _ := strings.Cut(r, "\r\n\r\n")
				if !strings.Contains(head, "Content-Length: "+strconv.Itoa(len(body))+"\r\n") {
					t.Fatalf("body of %d bytes does not match its head:\n%s", len(body), r)
				}
			}
		}
		// Every answer the fast path gave was a short send (a request
		// the general path took whole was answered there).
		short = srv.Metrics.slow[slowShortSend].Load() - short
		partial = srv.Metrics.slow[slowPartial].Load() - partial
		if short == 0 || short+partial != 20 {
			t.Fatalf("%d short sends and %d partial requests for 20 checks", short, partial)
		}
	})
	t.Run("rest of a short send", func(t *testing.T) {
		// A connection as the accept loop holds it, and an answer the
		// socket took only in part.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		client, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		f, err := sc.(*net.TCPConn).File()
		sc.Close()
		if err != nil {
			t.Fatal(err)
		}
		fd, err := syscall.Dup(int(f.Fd()))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		rest := strings.Repeat("x", 300<<10)
		before := srv.Metrics.slow[slowShortSend].Load()
		srv.handOff(fd, slowShortSend, nil, []byte(rest))
		client.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(client)
		if err != nil || string(b) != rest {
			t.Fatalf("got %d of %d bytes: %v", len(b), len(rest), err)
		}
		if srv.Metrics.slow[slowShortSend].Load() != before+1 {
			t.Fatal("short send not counted")
		}
	})
}

// A request that ends exactly where a read ends, with more bytes behind
// it: the answer must arrive whole, not be destroyed by a reset (on both
// paths: the fast path's buffer, the general path's bufio reader).
func TestRequestEndingAtReadBoundary(t *testing.T) {
	cfg := testConfig(t, "socket = \"/nonexistent/mysqld.sock\"", "")
	for _, fast := range []bool{true, false} {
		_, addr := startServerPath(t, cfg, fast)
		for _, size := range []int{512, fastBufSize} {
			head, tail := "GET /primary HTTP/1.1\r\nX: ", "\r\n\r\n"
			req := head + strings.Repeat("y", size-len(head)-len(tail)) + tail
			for i := range 10 {
				r, err := tryAsk(addr, req+"GET /health HTTP/1.1\r\n\r\n")
				if err != nil || !strings.HasPrefix(r, "HTTP/1.1 503 ") || strings.Count(r, "HTTP/1.1") != 1 {
					t.Fatalf("fast=%v, request of %d bytes, try %d: %q, %v", fast, size, i, r, err)
				}
			}
		}
	}
}

// FuzzFastPath feeds the fast path's parser what a client may have sent by
// the time it looks: whatever parses gets a non-empty answer (one line for
// the agent protocol), and nothing panics. (Handing prefixes on is tested
// in TestFastPathHandOffs.)
func FuzzFastPath(f *testing.F) {
	for _, s := range []string{"writer\n", "GET /primary HTTP/1.0\r\n\r\n", "GET /primary HT", "wri", "writer\nreader\n", "\x00\xff\n"} {
		f.Add([]byte(s))
	}
	srv := NewServer(benchConfig(f), discardLog())
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fastBufSize {
			data = data[:fastBufSize]
		}
		fc := newFastConn()
		fc.in.b = data
		fc.br.Reset(&fc.in)
		req, err := ReadRequest(fc.br)
		if err != nil {
			return
		}
		out := srv.appendResponse(&fc.rb, req)
		if len(out) == 0 {
			t.Fatalf("%q: empty answer", data)
		}
		if req.Kind == KindAgent && (strings.Count(string(out), "\n") != 1 || !strings.HasSuffix(string(out), "\n")) {
			t.Fatalf("%q: agent answer is not one line: %q", data, out)
		}
	})
}
