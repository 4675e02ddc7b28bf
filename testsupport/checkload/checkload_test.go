package checkload

import (
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serve answers every connection with answer after reading its request
// line, and counts connections.
func serve(t *testing.T, answer string) (string, *atomic.Int64) { return serveSlow(t, answer, 0) }

// serveSlow is serve, answering after delay.
func serveSlow(t *testing.T, answer string, delay time.Duration) (string, *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 64)
				if _, err := c.Read(buf); err != nil && err != io.EOF {
					return
				}
				time.Sleep(delay)
				io.WriteString(c, answer)
			}()
		}
	}()
	return l.Addr().String(), &n
}

func TestClosedLoopBoundedByCount(t *testing.T) {
	addr, conns := serve(t, "up 100%\n")
	r, err := Run(Options{Addr: addr, Request: "writer\n", Expect: "up", Clients: 3, Duration: time.Minute, MaxChecks: 200})
	if err != nil {
		t.Fatal(err)
	}
	if r.Checks != 200 || r.Errors != 0 {
		t.Fatalf("got %d checks, %d errors (%s); want exactly 200 good ones", r.Checks, r.Errors, r.FirstError)
	}
	if conns.Load() != 200 {
		t.Fatalf("server saw %d connections for 200 checks", conns.Load())
	}
	if !(r.P50 <= r.P99 && r.P99 <= r.P999 && r.P999 <= r.Max) || r.Mean <= 0 {
		t.Fatalf("percentiles out of order: %s", r)
	}
}

func TestWrongAnswersAreErrors(t *testing.T) {
	addr, _ := serve(t, "down\n")
	r, err := Run(Options{Addr: addr, Request: "writer\n", Expect: "up", Clients: 2, MaxChecks: 10})
	if err != nil {
		t.Fatal(err)
	}
	if r.Checks != 0 || r.Errors != 10 || !strings.Contains(r.FirstError, `"down\n"`) {
		t.Fatalf("%s; first error %q", r, r.FirstError)
	}
}

func TestRefusedIsAnError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r, err := Run(Options{Addr: addr, Request: "x\n", Clients: 1, MaxChecks: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 3 || !strings.Contains(r.FirstError, "connect") {
		t.Fatalf("%s; first error %q", r, r.FirstError)
	}
}

func TestOpenLoopKeepsTheSchedule(t *testing.T) {
	addr, conns := serve(t, "up\n")
	// 200/s for 1 s: the schedule, not the server's speed, sets the count.
	r, err := Run(Options{Addr: addr, Request: "writer\n", Expect: "up", Clients: 2, Duration: time.Second, Rate: 200})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.Checks < 190 || r.Checks > 200 {
		t.Fatalf("%s; want 190..200 checks at 200/s for 1s", r)
	}
	if conns.Load() != int64(r.Checks) {
		t.Fatalf("server saw %d connections for %d checks", conns.Load(), r.Checks)
	}
}

func TestBadAddress(t *testing.T) {
	for _, a := range []string{"", "localhost", "[::1]:80", "127.0.0.1:x", "127.0.0.1:0"} {
		if _, err := Run(Options{Addr: a, MaxChecks: 1}); err == nil {
			t.Errorf("%q accepted", a)
		}
	}
}

// A server slower than the schedule does not stretch the run: the checks
// still due at the end are counted as missed.
func TestOpenLoopBoundedInTime(t *testing.T) {
	addr, _ := serveSlow(t, "up\n", 200*time.Millisecond)
	r, err := Run(Options{Addr: addr, Request: "writer\n", Expect: "up", Clients: 1, Duration: time.Second, Rate: 50})
	if err != nil {
		t.Fatal(err)
	}
	if r.Missed == 0 || r.Checks+r.Errors+r.Missed != 50 {
		t.Fatalf("%s; want the 50 scheduled checks split into sent and missed", r)
	}
}
