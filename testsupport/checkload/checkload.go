// Package checkload is the load generator behind agentcheck's benchmark:
// clients that each open a TCP connection, send one check, read the answer
// to the server's close and close, as HAProxy's agent-check and httpchk do.
//
// It uses blocking socket system calls on locked OS threads rather than the
// net package, so that as little as possible of the machine goes to the
// generator itself: on a two-core machine it shares the cores with the
// server it measures. Every run is bounded in time and in count.
//
// Closed loop (Rate 0) measures the most checks per second the server and
// machine sustain; its latency is mostly queueing (Little's law: clients /
// rate). Open loop (Rate > 0) sends on a fixed schedule and measures each
// check from the moment it was due, so a stalled server shows as latency
// instead of silently lowering the rate (no coordinated omission); checks
// still due when the time is up are counted as missed.
package checkload

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Options describe one run.
type Options struct {
	// Addr is an IPv4 host:port (loopback or the lab's addresses).
	Addr string
	// Request is sent as is, e.g. "writer\n" or "GET /primary HTTP/1.0\r\n\r\n".
	Request string
	// Expect is the prefix a good answer starts with.
	Expect string
	// Clients is the number of concurrent connections (default 4).
	Clients int
	// Duration bounds the run (default 5 s, at most 10 min).
	Duration time.Duration
	// Rate, when positive, is the total checks per second to send on a
	// fixed schedule (open loop).
	Rate float64
	// MaxChecks bounds the run by count too (default 10 million).
	MaxChecks int
	// Timeout bounds one check (default 3 s).
	Timeout time.Duration
}

// Result is what a run measured.
type Result struct {
	Checks, Errors int
	// Missed counts open-loop checks that were due before the end but
	// never sent: the server was too slow to keep the schedule.
	Missed int
	// FirstError describes the first failed check.
	FirstError string
	Elapsed    time.Duration
	// Latency percentiles over the good checks.
	Mean, P50, P99, P999, Max time.Duration
}

// PerSecond is the rate of good checks.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Checks) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("%d checks, %.0f/s, mean %s, p50 %s, p99 %s, p99.9 %s, max %s, %d errors, %d missed",
		r.Checks, r.PerSecond(), round(r.Mean), round(r.P50), round(r.P99), round(r.P999), round(r.Max), r.Errors, r.Missed)
}

func round(d time.Duration) time.Duration { return d.Round(time.Microsecond) }

const (
	maxDuration = 10 * time.Minute
	maxAnswer   = 64 << 10
)

// Run performs one run.
func Run(o Options) (Result, error) {
	sa, err := sockaddr(o.Addr)
	if err != nil {
		return Result{}, err
	}
	if o.Clients <= 0 {
		o.Clients = 4
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	o.Duration = min(o.Duration, maxDuration)
	if o.MaxChecks <= 0 {
		o.MaxChecks = 10_000_000
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	var (
		mu       sync.Mutex
		lat      []time.Duration
		res      Result
		wg       sync.WaitGroup
		start    = time.Now()
		deadline = start.Add(o.Duration)
	)
	budget := newBudget(o.MaxChecks)
	var period time.Duration
	if o.Rate > 0 {
		// Each client owns every Clients-th slot of the global schedule.
		period = time.Duration(float64(time.Second) * float64(o.Clients) / o.Rate)
	}
	for i := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			// Each its own copy: Connect writes into the sockaddr.
			sa := *sa
			buf := make([]byte, maxAnswer)
			req := []byte(o.Request)
			var mine []time.Duration
			bad, first := 0, ""
			var due time.Time
			for n := 0; ; n++ {
				// t0 is when the check counts from. Open loop: from its
				// due time when the client is behind (the server kept it
				// waiting), else from the actual start, since sleeping
				// past the due time is the generator's own jitter.
				var t0 time.Time
				if period > 0 {
					due = start.Add(period*time.Duration(n) + period*time.Duration(i)/time.Duration(o.Clients))
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
						t0 = time.Now()
					} else {
						t0 = due
					}
				} else {
					due = time.Now()
					t0 = due
				}
				if !due.Before(deadline) || !budget.take() {
					break
				}
				if period > 0 && time.Now().After(deadline) {
					// Behind schedule at the end: the run is bounded in
					// time, so the slots still due are counted, not sent.
					missed := int((deadline.Sub(due) + period - 1) / period)
					mu.Lock()
					res.Missed += missed
					mu.Unlock()
					break
				}
				got, err := ask(&sa, req, buf, o.Timeout)
				if err == nil && !startsWith(got, o.Expect) {
					err = fmt.Errorf("answer %q does not start with %q", clip(got), o.Expect)
				}
				if err != nil {
					if bad == 0 {
						first = err.Error()
					}
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			res.Errors += bad
			if res.FirstError == "" {
				res.FirstError = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Checks = len(lat)
	if len(lat) > 0 {
		slices.Sort(lat)
		var sum time.Duration
		for _, l := range lat {
			sum += l
		}
		res.Mean = sum / time.Duration(len(lat))
		res.P50 = lat[len(lat)/2]
		res.P99 = lat[len(lat)*99/100]
		res.P999 = lat[len(lat)*999/1000]
		res.Max = lat[len(lat)-1]
	}
	return res, nil
}

// budget hands out at most n checks across all clients.
type budget struct {
	mu   sync.Mutex
	left int
}

func newBudget(n int) *budget { return &budget{left: n} }

func (b *budget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left <= 0 {
		return false
	}
	b.left--
	return true
}

func sockaddr(addr string) (*syscall.SockaddrInet4, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", addr, err)
	}
	ip := net.ParseIP(host).To4()
	p, perr := net.LookupPort("tcp", port)
	if ip == nil || perr != nil || p == 0 {
		return nil, fmt.Errorf("address %q: want an IPv4 address and a port", addr)
	}
	sa := &syscall.SockaddrInet4{Port: p}
	copy(sa.Addr[:], ip)
	return sa, nil
}

// ask performs one check on a blocking socket whose every call is bounded
// by timeout (SO_SNDTIMEO bounds connect too).
func ask(sa *syscall.SockaddrInet4, req, buf []byte, timeout time.Duration) ([]byte, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	defer syscall.Close(fd)
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv); err != nil {
		return nil, err
	}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	if err := connect(fd, sa, timeout); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	for off := 0; off < len(req); {
		var n int
		err := retry(func() (err error) { n, err = syscall.Write(fd, req[off:]); return })
		if err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
		off += n
	}
	n := 0
	for n < len(buf) {
		var m int
		err := retry(func() (err error) { m, err = syscall.Read(fd, buf[n:]); return })
		if err != nil {
			return buf[:n], fmt.Errorf("read after %d bytes: %w", n, err)
		}
		if m == 0 {
			return buf[:n], nil
		}
		n += m
	}
	return buf[:n], errors.New("answer too long")
}

// connect copes with the signals the Go runtime sends its threads: with a
// socket timeout set, an interrupted connect is not restarted but goes on
// in the background, and asking again says so (EALREADY) until it is done.
func connect(fd int, sa syscall.Sockaddr, timeout time.Duration) error {
	limit := time.Now().Add(timeout)
	err := syscall.Connect(fd, sa)
	for err == syscall.EINTR || err == syscall.EALREADY {
		if time.Now().After(limit) {
			return syscall.ETIMEDOUT
		}
		if err == syscall.EALREADY {
			time.Sleep(50 * time.Microsecond)
		}
		err = syscall.Connect(fd, sa)
	}
	if err == syscall.EISCONN {
		return nil
	}
	return err
}

func retry(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

func startsWith(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == prefix
}

func clip(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
