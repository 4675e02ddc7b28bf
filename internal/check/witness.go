package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
)

// Witness is what the witness probe found: nil when nobody asked.
type Witness struct {
	// None: the node has no witness at all, so nothing was asked.
	None bool
	// Source says where the witnesses came from.
	Source witness.Source
	// Reached is the first witness that answered; "" when none did.
	Reached string
	// Failures says why the others did not answer, one per witness.
	Failures []string
	// Err is set when the learned witnesses could not be read: the node
	// cannot tell whether it is cut off.
	Err error
}

// Isolated reports whether witnesses were asked and none answered, or
// could not be known.
func (w *Witness) Isolated() bool {
	return w != nil && (w.Err != nil || (!w.None && w.Reached == ""))
}

// Unguarded reports whether the node has no witness at all.
func (w *Witness) Unguarded() bool { return w != nil && w.Err == nil && w.None }

// Witnesses returns the node's witness set: the configured ones, else the
// ones agentcheck learned from the proxies.
func Witnesses(cfg *config.Config) (witness.Set, error) {
	if len(cfg.Check.Witnesses) > 0 {
		return witness.Select(cfg.Check.Witnesses, nil, 0), nil
	}
	learned, err := witness.Load(state.Dir(cfg.StateDir), witness.DefaultRules)
	if err != nil {
		return witness.Set{}, fmt.Errorf("learned witnesses in %s unreadable (delete the file; agentcheck learns them again): %w", cfg.StateDir, err)
	}
	return witness.Select(nil, learned, cfg.Check.LearnedWitnessPort), nil
}

// AskWitnesses finds the node's witnesses and asks them (see
// ProbeWitnesses); it never returns nil.
func AskWitnesses(ctx context.Context, cfg *config.Config) *Witness {
	set, err := Witnesses(cfg)
	if err != nil {
		return &Witness{Err: err}
	}
	if set.Source == witness.None {
		return &Witness{None: true}
	}
	w := ProbeWitnesses(ctx, set.Addrs, cfg.Check.WitnessTimeout.Duration)
	w.Source = set.Source
	return w
}

// Describe says in one line what the witnesses found, for logs and
// reasons.
func (w *Witness) Describe() string {
	switch {
	case w == nil:
		return "witnesses not asked"
	case w.Err != nil:
		return w.Err.Error()
	case w.None:
		return witness.NoWitnessWarning
	case w.Reached != "":
		return fmt.Sprintf("%s witness %s answers", w.Source, w.Reached)
	}
	return fmt.Sprintf("no %s witness answered (%s)", w.Source, strings.Join(w.Failures, "; "))
}

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
