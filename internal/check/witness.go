package check

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"time"
)

// Witness is what the witness probe found: nil when no witness is
// configured.
type Witness struct {
	// Reached is the first witness that answered; "" when none did.
	Reached string
	// Failures says why the others did not answer, one per witness.
	Failures []string
}

// Isolated reports whether witnesses were asked and none answered.
func (w *Witness) Isolated() bool { return w != nil && w.Reached == "" }

// ProbeWitnesses connects to every address at once and returns when the
// first answers, or when all have failed or timeout passed. A refused
// connection is an answer: the host is there, so is the path to it.
//
// Halfway through the timeout, witnesses that have not answered are asked
// again on a new connection: the kernel would resend a lost SYN only after
// a second, so without it one dropped packet would fail the witness.
func ProbeWitnesses(ctx context.Context, addrs []string, timeout time.Duration) *Witness {
	if len(addrs) == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		// Say the bound that really applies.
		timeout = max(0, min(timeout, time.Until(dl).Round(time.Millisecond)))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		addr string
		err  error
	}
	// Buffered for every attempt: late ones never block after we return.
	results := make(chan result, 2*len(addrs))
	dial := func(a string) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", a)
		if err == nil {
			c.Close()
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			err = nil
		}
		results <- result{a, err}
	}
	for _, a := range addrs {
		go dial(a)
	}
	again := time.NewTimer(timeout / 2)
	defer again.Stop()
	pending := map[string]int{} // attempts still out, per witness
	for _, a := range addrs {
		pending[a]++
	}
	failed := map[string]error{}
	w := &Witness{}
	for len(pending) > 0 {
		select {
		case r := <-results:
			if r.err == nil {
				// The other dials end with ctx (cancel above).
				w.Reached = r.addr
				return w
			}
			failed[r.addr] = r.err
			if pending[r.addr]--; pending[r.addr] == 0 {
				delete(pending, r.addr)
			}
		case <-again.C:
			for a := range pending {
				pending[a]++
				go dial(a)
			}
		}
	}
	for _, a := range addrs {
		if err, ok := failed[a]; ok {
			w.Failures = append(w.Failures, a+": "+witnessError(err, timeout))
			delete(failed, a) // a witness listed twice is told once
		}
	}
	return w
}

func witnessError(err error, timeout time.Duration) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return "no answer within " + timeout.String()
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	}
	// Drop the "dial tcp a->b:" prefix the address already says.
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
