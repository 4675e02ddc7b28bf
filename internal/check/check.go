// Package check decides whether this node is fit to hold the VIP: the whole
// verdict of mysqlcheck lives in Evaluate, a pure function of what was read
// (server snapshot, maintenance flag, notify's last outcome) and the config.
//
// The rule it never breaks: a state it does not understand, or could not
// read, is unfit.
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
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
)

// Status is a Nagios-style severity.
type Status int

const (
	OK Status = iota
	Warning
	Critical
	Unknown
)

func (s Status) String() string {
	return [...]string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}[s]
}

// Verdict is the outcome of one check.
type Verdict struct {
	// Fit is what keepalived gets: true only for OK and Warning.
	Fit    bool
	Status Status
	// Role is "writer", "standby" or "" when unknown.
	Role string
	// Reason is one line saying why.
	Reason string
	// Lag is the replication lag used for the verdict, when known.
	Lag *time.Duration
	// Took is the wall time of the whole check.
	Took time.Duration
	// Misconfigured says the check could not read the server because of
	// the setup (see Misconfig): Status is Unknown, Fit false.
	Misconfigured bool
	// Maintenance says the verdict is the maintenance flag's.
	Maintenance bool
}

// Input is everything Evaluate decides on.
type Input struct {
	Snapshot    *probe.Snapshot
	SnapshotErr error
	Maintenance state.Maintenance
	Outcome     *state.Outcome
	OutcomeErr  error
	// Timeout is the deadline the snapshot ran under, for the message.
	Timeout time.Duration
	// Witness is the witness probe's result (nil: not asked).
	Witness *Witness
}

func verdict(st Status, role, format string, a ...any) Verdict {
	return Verdict{Fit: st == OK || st == Warning, Status: st, Role: role, Reason: fmt.Sprintf(format, a...)}
}

// Evaluate turns what was read into a verdict.
func Evaluate(c config.Check, in Input) Verdict {
	if m := in.Maintenance; m.On {
		return verdict(Critical, "", "%s", m.Describe(true))
	}
	if w := in.Witness; w.Isolated() {
		// Cut off from the network: whatever mysqld says, holding the VIP
		// here would keep a writer the clients cannot reach beside the
		// one the peer is about to promote.
		if w.Err != nil {
			return verdict(Critical, "", "isolated or not, cannot tell: %v", w.Err)
		}
		return verdict(Critical, "", "isolated: no witness answered (%s)", strings.Join(w.Failures, "; "))
	}
	v := evaluateServer(c, in)
	if in.Witness.Unguarded() && v.Fit {
		// Fit, but a holder cut off with its link up would stay fit too:
		// monitoring must hear about it.
		v.Status = max(v.Status, Warning)
		v.Reason += "; " + witness.NoWitnessWarning
	}
	return v
}

// evaluateServer is the verdict on the server's own state.
func evaluateServer(c config.Check, in Input) Verdict {
	if in.SnapshotErr != nil {
		return errorVerdict(in.SnapshotErr, in.Timeout)
	}
	s := in.Snapshot
	if s == nil {
		return verdict(Unknown, "", "no server state was read")
	}
	if in.OutcomeErr != nil {
		return verdict(Critical, "", "cannot read notify's last outcome: %v", in.OutcomeErr)
	}
	if o := in.Outcome; o != nil && o.Unfit {
		return verdict(Critical, "", "notify marked this node unfit after %s: %s", o.Event, o.Reason)
	}
	if s.Writable() {
		v := verdict(OK, "writer", "writer: read_only=OFF, %s answers", s.Version)
		for _, r := range s.Replicas {
			if problem := r.Problem(); problem != "" {
				// The writer keeps the VIP: moving it would not mend the
				// reverse channel. Monitoring still hears about it.
				v = verdict(Warning, "writer", "writer: read_only=OFF, but reverse replication: %s", problem)
			}
		}
		if ss := s.SemiSync; ss != nil && ss.InUse() {
			// Commits no longer wait for the standby: a failover now
			// may lose acknowledged writes. Fit, but monitoring hears.
			if !ss.Active() {
				v.Status = max(v.Status, Warning)
			}
			v.Reason += "; " + ss.Describe()
		}
		return v
	}
	v := evaluateStandby(c, s)
	if ss := s.SemiSync; ss != nil && ss.InUse() && v.Fit {
		v.Reason += "; " + ss.Describe()
	}
	return v
}

func evaluateStandby(c config.Check, s *probe.Snapshot) Verdict {
	const role = "standby"
	if len(s.Replicas) == 0 {
		if *c.RequireReplication {
			return verdict(Critical, role, "read-only and not replicating from any source")
		}
		return verdict(OK, role, "standby: read-only, no replication configured")
	}
	var worst time.Duration
	var lagKnown bool
	sourceDown := ""
	for _, r := range s.Replicas {
		if p := r.Problem(); p != "" {
			if *c.FailOnReplicationError {
				return verdict(Critical, role, "%s", p)
			}
			return verdict(Warning, role, "%s (tolerated: fail_on_replication_error=false)", p)
		}
		switch r.Health() {
		case probe.SourceUnreachable:
			// What a healthy standby sees when the writer died. Lag is
			// meaningless then; the promotion gate in notify waits for
			// the relay log instead.
			sourceDown = fmt.Sprintf("source %s unreachable (IO thread %s, error %d)", r.SourceHost, r.IORunning, r.IOErrno)
			continue
		case probe.Starting:
			// Connecting or registering after a (re)start: streaming in
			// a moment, or one of the states above at the next check.
			sourceDown = fmt.Sprintf("IO thread %s to source %s", r.IORunning, r.SourceHost)
			continue
		}
		lag, ok := replicaLag(s, r)
		if ok && (!lagKnown || lag > worst) {
			worst, lagKnown = lag, true
		}
	}
	v := verdict(OK, role, "standby: read-only, replicating")
	if lagKnown {
		v.Lag = &worst
		v.Reason += ", lag " + worst.String()
		if c.MaxLag.Duration > 0 && worst > c.MaxLag.Duration {
			v = verdict(Critical, role, "standby lag %s is above max_lag %s", worst, c.MaxLag.Duration)
			v.Lag = &worst
			return v
		}
		if c.WarnLag.Duration > 0 && worst > c.WarnLag.Duration {
			v.Status = Warning
		}
	}
	if sourceDown != "" {
		v.Reason += ", " + sourceDown
	}
	return v
}

// replicaLag prefers the heartbeat table, which stays truthful when
// Seconds_Behind_Master reads 0 behind a lagging IO thread.
func replicaLag(s *probe.Snapshot, r probe.Replica) (time.Duration, bool) {
	if s.HeartbeatLag != nil {
		return *s.HeartbeatLag, true
	}
	if r.SecondsBehind != nil {
		return time.Duration(*r.SecondsBehind) * time.Second, true
	}
	return 0, false
}

// describeError turns a probe error into the reason line, naming the frozen
// or dead server plainly, and a setup mistake as one (what, which key, how
// to fix).
func describeError(err error, timeout time.Duration) string {
	var mc *Misconfig
	var oe *net.OpError
	unix := errors.As(err, &oe) && oe.Net == "unix" && oe.Addr != nil
	switch {
	case errors.As(err, &mc):
		return mc.Error()
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return fmt.Sprintf("mysqld did not answer within %s (frozen or overloaded): %v", timeout, err)
	case unix && errors.Is(err, syscall.ENOENT):
		return fmt.Sprintf("no socket at %q: mysqld is not running (it removes its socket when it stops), or %s names the wrong path (compare socket= in mysqld's my.cnf): %v",
			oe.Addr.String(), keySocket, err)
	case unix && errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("mysqld is not running (nothing listens on %q): %v", oe.Addr.String(), err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("mysqld is not running (nothing listens): %v", err)
	}
	return fmt.Sprintf("mysqld does not answer: %v", err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Run reads everything and evaluates it, all within cfg.Check.Timeout.
func Run(ctx context.Context, cfg *config.Config) Verdict {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.Check.Timeout.Duration)
	defer cancel()
	dir := state.Dir(cfg.StateDir)
	in := Input{Timeout: cfg.Check.Timeout.Duration}
	var err error
	in.Maintenance, err = dir.Maintenance()
	if err != nil && !in.Maintenance.On {
		in.SnapshotErr = &Misconfig{Problem: "cannot read the maintenance flag", Key: keyStateDir,
			Fix: "the directory and its files must be readable by the user running the check", Err: err}
	}
	if in.Maintenance.On {
		v := Evaluate(cfg.Check, in)
		v.Took = time.Since(start)
		v.Maintenance = true
		return v
	}
	in.Outcome, in.OutcomeErr = dir.Outcome()
	asked := make(chan *Witness, 1)
	go func() { asked <- AskWitnesses(ctx, cfg) }()
	if in.SnapshotErr == nil {
		in.Snapshot, in.SnapshotErr = Snapshot(ctx, cfg)
		if mc := classify(in.SnapshotErr, inspectSocket); mc != nil {
			in.SnapshotErr = mc
		}
	}
	in.Witness = <-asked
	v := Evaluate(cfg.Check, in)
	v.Took = time.Since(start)
	return v
}

// Snapshot reads the local server on one fresh connection (a pooled one
// could hide a server that no longer accepts new connections), with every
// timeout shortened to fit ctx's deadline. mysqlcheck and agentcheck's poller
// both read the server through it.
func Snapshot(ctx context.Context, cfg *config.Config) (*probe.Snapshot, error) {
	t := probe.LocalTarget(cfg)
	// The query timeout must not outlive the check's own deadline.
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < t.QueryTimeout {
			t.QueryTimeout = left
		}
		if left := time.Until(dl); left < t.ConnectTimeout {
			t.ConnectTimeout = left
		}
	}
	db, err := probe.Open(t)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	p := &probe.Prober{
		Q:                 conn,
		QueryTimeout:      t.QueryTimeout,
		HeartbeatTable:    cfg.Heartbeat.Table,
		HeartbeatServerID: cfg.Heartbeat.ServerID,
		HeartbeatUTC:      *cfg.Heartbeat.UTC,
		WithSemiSync:      true,
	}
	return p.Snapshot(ctx)
}
