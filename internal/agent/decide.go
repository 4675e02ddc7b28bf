// Package agent is agentcheck's responder: it tells HAProxy, over the
// agent-check protocol and over HTTP health checks, whether this node may
// take writes, reads, or nothing at all.
//
// Every answer comes from memory. A Poller reads MySQL once per interval on
// a fresh connection (so a server that stopped accepting new connections is
// noticed even while an old one still works) and caches the snapshot; the
// maintenance flag and notify's last outcome are re-read whenever their
// files change (a stat per check, see files.go). The whole answer is decided
// in one function, Decide; the wire formats live in proto.go; the listeners,
// deadlines and connection cap in server.go.
//
// Admin-state policy: HAProxy shares the admin state (ready, drain, maint)
// between its CLI and the agent, so an agent that answers "ready" undoes an
// operator's "set server … state maint" on every poll. This agent therefore
// never sends an admin-state word. It speaks only health (up, down) and
// weight (N%): maintenance "drain" is "up 0%" (no new connections, sessions
// finish) and maintenance "maint" is "down" (with on-marked-down
// shutdown-sessions, sessions are closed). Both are re-asserted on every
// check, so clearing the flag brings the node back by itself, while
// whatever an operator set on the HAProxy CLI stays exactly as set.
package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
)

// Role is what a check asks about.
type Role int

const (
	RoleUnknown Role = iota
	RoleWriter
	RoleReader
	RoleReadOnly
	RoleHealth
	RoleLiveness
	RoleReadiness
	RoleMetrics
	numRoles
)

var roleNames = [numRoles]string{"unknown", "writer", "reader", "read-only", "health", "liveness", "readiness", "metrics"}

func (r Role) String() string {
	if r < 0 || r >= numRoles {
		return "unknown"
	}
	return roleNames[r]
}

// Verdict is the kind of answer, as counted in metrics.
type Verdict int

const (
	Down Verdict = iota
	Up
	Drain
	Maint
	numVerdicts
)

var verdictNames = [numVerdicts]string{"down", "up", "drain", "maint"}

func (v Verdict) String() string { return verdictNames[v] }

// Policy is the part of the configuration Decide needs.
type Policy struct {
	StaleAfter    time.Duration
	MaxLag        time.Duration
	FullWeightLag time.Duration
	MinWeight     int
	// Maintenance is "drain" or "maint".
	Maintenance string
	Check       config.Check
	// Timeout is the poll deadline, for messages.
	Timeout time.Duration
	// Peer says a [peer] is configured: this node is one of the pair. A
	// node without one is a read replica behind the pair, which must
	// follow the writer through every failover.
	Peer bool
}

// PolicyFrom builds the policy of a configuration.
func PolicyFrom(c *config.Config) Policy {
	a := c.Agent
	return Policy{
		StaleAfter:    a.StaleAfter.Duration,
		MaxLag:        a.MaxLag.Duration,
		FullWeightLag: a.FullWeightLag.Duration,
		MinWeight:     a.MinWeight,
		Maintenance:   a.Maintenance,
		Check:         c.Check,
		Timeout:       pollTimeout(c),
		Peer:          c.Peer.Host != "",
	}
}

// Input is everything an answer depends on.
type Input struct {
	// Poll is the last poll attempt (nil before the first one ended).
	Poll *State
	Now  time.Time
	// LoopAlive says the poll loop itself still turns (liveness).
	LoopAlive   bool
	Maintenance state.Maintenance
	MaintErr    error
	Outcome     *state.Outcome
	OutcomeErr  error
	// Silent, when not "", says why the fast path (Tracker) finds mysqld
	// silent: frozen past agent.unresponsive_after, or not running.
	Silent string
}

// Answer is the decision for one check.
type Answer struct {
	Role    Role
	Verdict Verdict
	// Weight in percent for up and drain answers; -1 for none.
	Weight int
	Reason string
	Lag    *time.Duration
	// Age of the state the answer was made from (-1: none).
	Age time.Duration
}

// Decide is the whole answer decision. maxLag overrides the policy's reader
// limit when positive (from /replica?max_lag= or "reader max_lag=N").
func Decide(p Policy, role Role, in Input, maxLag time.Duration) Answer {
	a := Answer{Role: role, Verdict: Down, Weight: -1, Age: -1}
	if in.Poll != nil {
		a.Age = in.Now.Sub(in.Poll.At)
	}
	down := func(format string, args ...any) Answer {
		a.Verdict, a.Weight, a.Reason = Down, -1, fmt.Sprintf(format, args...)
		return a
	}
	if role == RoleLiveness {
		if !in.LoopAlive {
			return down("poll loop has not completed a poll within %s", p.StaleAfter)
		}
		a.Verdict, a.Reason = Up, "poll loop alive"
		return a
	}
	if role == RoleUnknown || role == RoleMetrics {
		return down("unknown check")
	}
	// The fast path polls five times a second: a server it found silent
	// is down at once, not only once this poll's own deadline or the
	// state's age says so (HAProxy would meanwhile send new sessions to
	// a frozen server).
	if in.Silent != "" {
		return down("mysqld silent (fast path): %s", in.Silent)
	}
	// Freshness first: an old state is never an "up".
	if in.Poll == nil {
		return down("no poll has completed yet")
	}
	if a.Age > p.StaleAfter {
		return down("state is stale: last poll ended %s ago (bound %s)", a.Age.Round(time.Millisecond), p.StaleAfter)
	}
	if in.Poll.Err != nil {
		return down("%s", describePollError(in.Poll.Err, p.Timeout))
	}
	s := in.Poll.Snapshot
	if s == nil {
		return down("no server state was read")
	}
	if role == RoleReadiness {
		a.Verdict, a.Reason = Up, fmt.Sprintf("last poll ok (%s ago)", a.Age.Round(time.Millisecond))
		return a
	}
	cin := check.Input{Snapshot: s, Outcome: in.Outcome, OutcomeErr: in.OutcomeErr, Timeout: p.Timeout}
	if role == RoleHealth {
		// The keepalived verdict, maintenance included, as mysqlcheck says it.
		cin.Maintenance = in.Maintenance
		if in.MaintErr != nil && !in.Maintenance.On {
			return down("cannot read the maintenance flag: %v", in.MaintErr)
		}
		v := check.Evaluate(p.Check, cin)
		a.Lag, a.Reason = v.Lag, v.Reason
		if v.Fit {
			a.Verdict = Up
		}
		return a
	}

	// Writer, reader, read-only: decide on the server, then apply the
	// operator's maintenance flag on top.
	a = decideRole(p, role, s, cin, maxLag, a)
	if m := in.Maintenance; m.On || in.MaintErr != nil {
		why := m.Describe(false)
		if a.Verdict != Up {
			a.Reason = why + "; and " + a.Reason
			return a
		}
		if p.Maintenance == "maint" {
			a.Verdict, a.Weight, a.Reason = Maint, -1, why
		} else {
			a.Verdict, a.Weight, a.Reason = Drain, 0, why
		}
	}
	return a
}

func decideRole(p Policy, role Role, s *probe.Snapshot, cin check.Input, maxLag time.Duration, a Answer) Answer {
	down := func(format string, args ...any) Answer {
		a.Verdict, a.Weight, a.Reason = Down, -1, fmt.Sprintf(format, args...)
		return a
	}
	if cin.OutcomeErr != nil {
		return down("cannot read notify's last outcome: %v", cin.OutcomeErr)
	}
	if s.Writable() {
		if role == RoleReadOnly {
			return down("read_only=OFF: this node is writable")
		}
		// A writable node serves reads and writes only after notify
		// completed a promotion here: writable without one is a node
		// nobody promoted (a manual SET or a half-done failover).
		o := cin.Outcome
		switch {
		case o == nil:
			return down("read_only=OFF but notify has not promoted this node")
		case o.Unfit:
			return down("notify marked this node unfit after %s: %s", o.Event, o.Reason)
		case !o.Promoted():
			return down("read_only=OFF but notify's last outcome is %s %s (role %q), not a completed promotion", o.Event, o.Phase, o.Role)
		}
		a.Verdict, a.Weight = Up, 100
		a.Reason = fmt.Sprintf("writer: read_only=OFF, promoted by notify (%s)", o.Event)
		zero := time.Duration(0)
		a.Lag = &zero
		return a
	}
	if role == RoleWriter {
		return down("read_only=ON: not the writer")
	}
	a = decideReader(p, s, cin, maxLag, a)
	if !p.Peer {
		// A replica outside the pair replicates from the VIP: only a GTID
		// channel finds its place on the new writer after a failover. It
		// serves correct reads until then, so this is said, not answered
		// down. (A pair member's channel names its peer and never moves;
		// one by file/position is doctor's concern.)
		for _, r := range s.Replicas {
			if w := r.PositioningProblem(); w != "" {
				a.Reason += "; WARNING: " + w
			}
		}
	}
	return a
}

// decideReader answers reader and read-only for a read-only node: up while
// every channel streams with lag under the limit.
func decideReader(p Policy, s *probe.Snapshot, cin check.Input, maxLag time.Duration, a Answer) Answer {
	down := func(format string, args ...any) Answer {
		a.Verdict, a.Weight, a.Reason = Down, -1, fmt.Sprintf(format, args...)
		return a
	}
	v := check.Evaluate(p.Check, cin)
	if !v.Fit {
		return down("%s", v.Reason)
	}
	if len(s.Replicas) == 0 {
		return down("read-only and not replicating: its data may be stale")
	}
	for _, r := range s.Replicas {
		if h := r.Health(); h != probe.Streaming {
			return down("replication IO thread is %s (%s, source %s): data may be stale", r.IORunning, h, r.SourceHost)
		}
	}
	if v.Lag == nil {
		return down("replication lag is unknown")
	}
	lag := *v.Lag
	a.Lag = &lag
	limit := p.MaxLag
	if maxLag > 0 {
		limit = maxLag
	}
	if lag > limit {
		return down("replication lag %s is above max_lag %s", lag, limit)
	}
	a.Verdict, a.Weight = Up, weightFor(p, lag, limit)
	a.Reason = fmt.Sprintf("reader: replicating, lag %s", lag)
	return a
}

// weightFor lets the weight fall linearly from 100% at FullWeightLag to
// MinWeight at the lag limit, so HAProxy shifts reads to the fresher node
// before this one is taken out.
func weightFor(p Policy, lag, limit time.Duration) int {
	full := p.FullWeightLag
	if lag <= full || limit <= full {
		return 100
	}
	minW := p.MinWeight
	if minW < 1 {
		minW = 1
	}
	frac := float64(lag-full) / float64(limit-full)
	w := 100 - int(frac*float64(100-minW)+0.5)
	return max(minW, min(100, w))
}

func describePollError(err error, timeout time.Duration) string {
	// check.Evaluate words a probe error the way mysqlcheck does.
	v := check.Evaluate(config.Check{}, check.Input{SnapshotErr: err, Timeout: timeout})
	if v.Reason == "" {
		return err.Error()
	}
	return v.Reason
}

// errNoRole is answered down when a check names no role.
var errNoRole = errors.New("no role named")

// clean makes a reason safe for one protocol line: printable ASCII, no
// line breaks, bounded.
func clean(s string, limit int) string { return string(appendClean(nil, s, limit)) }

// appendClean appends s with every rune outside printable ASCII turned into
// a space, runs of spaces collapsed, no space at either end, and at most
// limit bytes before a "..." that says it was cut.
func appendClean(b []byte, s string, limit int) []byte {
	start := len(b)
	space := true // drops leading spaces
	for _, r := range s {
		if r < 0x20 || r > 0x7e {
			r = ' '
		}
		if r == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		if len(b)-start >= limit {
			for len(b) > start && b[len(b)-1] == ' ' {
				b = b[:len(b)-1]
			}
			return append(b, "..."...)
		}
		b = append(b, byte(r))
	}
	for len(b) > start && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}
