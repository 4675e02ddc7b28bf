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
func ProbeWitnesses(ctx context.Context, addrs []string, timeout time.Duration) *Witness {
	if len(addrs) == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		// Say the bound that really applied.
		timeout = min(timeout, time.Until(dl).Round(time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		addr string
		err  error
	}
	results := make(chan result, len(addrs))
	for _, a := range addrs {
		go func() {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", a)
			if err == nil {
				c.Close()
			} else if errors.Is(err, syscall.ECONNREFUSED) {
				err = nil
			}
			results <- result{a, err}
		}()
	}
	w := &Witness{}
	for range addrs {
		r := <-results
		if r.err == nil {
			// The other dials end with ctx (cancel above); their results
			// go to the buffered channel and are dropped.
			w.Reached = r.addr
			return w
		}
		w.Failures = append(w.Failures, r.addr+": "+witnessError(r.err, timeout))
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
