// Package fence is notify's decision: what a keepalived state change means
// for this node's MySQL. A fence (BACKUP, FAULT, STOP, DELETED) stops writes
// here — read_only set while client threads are killed, a stable final
// position recorded, stale TCP clients of the VIP reset, replication from
// the peer verified. A promotion (MASTER) fences the peer over the network,
// waits until this node has applied everything the old writer wrote, and
// only then opens writes, or, when the gate is not met in time, applies the
// configured policy.
//
// Runs overlap and arrive out of order, so every event gets a generation
// number (internal/state) and the newest always wins: a superseded run stops
// at once, and opening writes re-checks the number under a lock that every
// newer event must take first. Each step is logged with its duration
// (log/slog, key=value on stderr) and the outcome goes to the state
// directory, where mysqlcheck and agentcheck read it.
package fence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/tcpreset"
)

// Errors a run ends with; the command maps them to exit codes.
var (
	// ErrSuperseded: a newer event arrived; it owns the node now.
	ErrSuperseded = errors.New("superseded by a newer event")
	// ErrGateNotMet: reliability first, and the node had not caught up in
	// time; it stays read-only and is marked unfit.
	ErrGateNotMet = errors.New("promotion gate not met")
	// ErrInterrupted: a signal ended a promotion; the node is read-only.
	ErrInterrupted = errors.New("interrupted")
	// ErrRefused: promotion refused for a standing reason (maintenance, a
	// peer that answers but cannot be fenced).
	ErrRefused = errors.New("promotion refused")
	// ErrUnkillable: a fence found client sessions it is not allowed to
	// end on a server where read_only does not stop them.
	ErrUnkillable = errors.New("client sessions cannot be ended")
	// ErrPreempted: the promotion's own connection was killed, which is
	// what the peer's fence does: the peer is taking over. Read-only.
	ErrPreempted = errors.New("promotion preempted: this node is being fenced by the peer")
)

// Engine runs fences and promotions for one node.
type Engine struct {
	Cfg *config.Config
	Log *slog.Logger
	// DryRun prints the plan and every SQL statement to Plan and changes
	// nothing: no SET, no KILL, no state files, no packets.
	DryRun bool
	Plan   io.Writer
	// ResetClients, when set, resets the stale TCP clients of vip after a
	// fence (see internal/tcpreset). It must honour ctx.
	ResetClients func(ctx context.Context, vip string, log *slog.Logger) error
	// CutClients, when set, closes the TCP sessions s selects and says how
	// many (tcpreset.CloseAccepted). A fence uses it on a hung server.
	CutClients func(s tcpreset.Sessions) (int, error)
	// PollInterval is how often a run checks whether it was superseded.
	PollInterval time.Duration
}

func (e *Engine) dir() state.Dir { return state.Dir(e.Cfg.StateDir) }

func (e *Engine) plan(format string, a ...any) {
	if e.DryRun && e.Plan != nil {
		fmt.Fprintf(e.Plan, format+"\n", a...)
	}
}

// step logs the start of a step and returns a function that logs its end
// with the duration.
func (e *Engine) step(name string, attrs ...any) func(err error, more ...any) {
	start := time.Now()
	e.Log.Info("step start", append([]any{"step", name}, attrs...)...)
	return func(err error, more ...any) {
		args := append([]any{"step", name, "took", time.Since(start).Round(time.Microsecond)}, more...)
		if err != nil {
			e.Log.Error("step failed", append(args, "err", err)...)
			return
		}
		e.Log.Info("step done", args...)
	}
}

// Bump records ev as the newest event and returns its generation (0 in
// dry-run, where nothing is written). An event that asks nothing (an
// unknown state) is not recorded: it would supersede a run in progress.
func (e *Engine) Bump(ctx context.Context, ev Event) (uint64, error) {
	if e.DryRun || ev.Action() == Ignore {
		return 0, nil
	}
	bctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	g, err := e.dir().BumpGeneration(bctx, ev.State)
	if err != nil {
		return 0, fmt.Errorf("recording event: %w", err)
	}
	return g.N, nil
}

// Relevant reports whether ev concerns this node's MySQL (notify.instance).
func (e *Engine) Relevant(ev Event) bool {
	return e.Cfg.Notify.Instance == "" || e.Cfg.Notify.Instance == ev.Name
}

// Handle runs what ev asks for, as generation gen (from Bump). ctx ends on
// SIGTERM: a fence finishes regardless (it only makes things safer), a
// promotion stops and leaves the node read-only.
func (e *Engine) Handle(ctx context.Context, ev Event, gen uint64) error {
	r := *e // a copy per run: concurrent runs each get their own logger
	r.Log = e.Log.With("event", ev.State, "instance", ev.Name, "gen", gen)
	switch ev.Action() {
	case Fence:
		return r.fence(ctx, ev, gen)
	case Promote:
		return r.promote(ctx, ev, gen)
	}
	r.Log.Warn("unknown keepalived state: changing nothing")
	return nil
}

// watch returns a context cancelled (with cause ErrSuperseded) as soon as a
// newer generation than gen is recorded.
func (e *Engine) watch(ctx context.Context, gen uint64) (context.Context, context.CancelFunc) {
	wctx, cancel := context.WithCancelCause(ctx)
	if e.DryRun {
		return wctx, func() { cancel(nil) }
	}
	every := e.PollInterval
	if every <= 0 {
		every = 20 * time.Millisecond
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				// An unreadable generation file is read as superseded:
				// stopping is always the safe side.
				if ok, err := e.dir().Current(gen); err != nil || !ok {
					cancel(ErrSuperseded)
					return
				}
			}
		}
	}()
	return wctx, func() { cancel(nil) }
}

// superseded reports whether ctx ended because a newer event arrived.
func isSuperseded(ctx context.Context) bool { return errors.Is(context.Cause(ctx), ErrSuperseded) }

// writeOutcome records o if gen is still the newest event.
func (e *Engine) writeOutcome(gen uint64, o state.Outcome) {
	if e.DryRun {
		e.plan("would record outcome: event=%s phase=%s role=%s unfit=%v reason=%q position=%q", o.Event, o.Phase, o.Role, o.Unfit, o.Reason, o.FinalPosition)
		return
	}
	o.Generation = gen
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ok, err := e.dir().WriteOutcomeIfCurrent(ctx, gen, o)
	switch {
	case err != nil:
		e.Log.Error("cannot record outcome", "err", err)
	case !ok:
		e.Log.Info("outcome not recorded: a newer event owns the node", "phase", o.Phase)
	default:
		e.Log.Info("outcome recorded", "phase", o.Phase, "role", o.Role, "unfit", o.Unfit, "reason", o.Reason, "position", o.FinalPosition)
	}
}

// runLock takes the per-node run lock, waiting at most wait. A fence that
// cannot get it proceeds anyway (nil lock): read_only=ON is always safe.
func (e *Engine) runLock(ctx context.Context, wait time.Duration) (*state.Lock, error) {
	if e.DryRun {
		return nil, nil
	}
	done := e.step("lock", "wait_max", wait)
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	l, err := e.dir().RunLock(lctx)
	done(err)
	return l, err
}

// localTarget is the local server, with socket timeouts long enough for
// SET GLOBAL read_only under lock_wait_timeout and for catch-up steps.
func (e *Engine) localTarget() probe.Target {
	t := probe.LocalTarget(e.Cfg)
	t.QueryTimeout = max(t.QueryTimeout, 3*time.Second)
	return t
}

func (e *Engine) peerTarget() probe.Target {
	t := probe.PeerTarget(e.Cfg)
	t.QueryTimeout = max(t.QueryTimeout, 3*time.Second)
	return t
}

// open returns a pool for t with room for the fence's two connections and
// a reconnect.
func open(t probe.Target) (*sql.DB, error) {
	db, err := probe.Open(t)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	return db, nil
}

func (e *Engine) admin(q probe.Execer, v probe.Version, where string) *probe.Admin {
	return &probe.Admin{
		Q: q, V: v, QueryTimeout: e.Cfg.MySQL.QueryTimeout.Duration, DryRun: e.DryRun,
		Trace: func(stmt string, executed bool) {
			switch {
			case e.DryRun && executed:
				e.plan("  %s SQL (read): %s", where, stmt)
			case e.DryRun:
				e.plan("  %s SQL (not run): %s", where, stmt)
			default:
				e.Log.Debug("sql", "server", where, "stmt", stmt)
			}
		},
	}
}

func toState(p probe.Position) *state.Position {
	sp := &state.Position{ServerID: p.ServerID, GTID: p.GTID}
	if p.Binlog != nil {
		sp.File, sp.Pos = p.Binlog.File, p.Binlog.Pos
	}
	return sp
}
