package fence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/semisync"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/tcpreset"
)

// fenceReport is what a server fence found and did.
type fenceReport struct {
	Version  probe.Version
	Position probe.Position
	Killed   int // KILLs sent
	Rounds   int // processlist reads
	// Unkillable lists the client sessions the server refused to end
	// (missing privilege), as "id user@host".
	Unkillable []string
	// SemiSync is the server's semi-sync state when the fence began (nil
	// when it could not be read).
	SemiSync *probe.SemiSync
	// Acking: the server acknowledges its source (semi-sync replica side
	// on, a receiver connected): fenced as the peer, it acknowledges the
	// node that promotes.
	Acking bool
}

// spareSet is the set of our own connection ids, shared by the two
// goroutines of a fence.
type spareSet struct {
	mu  sync.Mutex
	ids map[uint64]bool
}

func (s *spareSet) add(id uint64) { s.mu.Lock(); s.ids[id] = true; s.mu.Unlock() }
func (s *spareSet) snapshot() map[uint64]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[uint64]bool, len(s.ids))
	for k := range s.ids {
		m[k] = true
	}
	return m
}

// fenceServer stops all writes on one server (local, or the peer over TCP)
// and returns its final position. read_only is set on one connection,
// retried under a 1 s lock_wait_timeout, while a second connection kills
// every client thread, so the SET never waits behind the very statement that
// must die. It returns once read_only is confirmed, every client thread
// present when it took effect is gone, and the server's own position has
// not moved over the stable window. ctx bounds all of it.
func (e *Engine) fenceServer(ctx context.Context, db *sql.DB, where string) (fenceReport, error) {
	asked := time.Now()
	killConn, err := db.Conn(ctx)
	if err != nil {
		return fenceReport{}, fmt.Errorf("connecting to %s: %w", where, err)
	}
	defer killConn.Close()
	f := &serverFence{e: e, db: db, where: where, spare: &spareSet{ids: map[uint64]bool{}}}
	if time.Since(asked) > hungGreeting {
		f.firstShot(ctx, killConn)
	}
	err = f.run(ctx, killConn)
	return f.rep, err
}

// serverFence is one fence of one server: its connections, the sessions
// it spares, and what it found.
type serverFence struct {
	e     *Engine
	db    *sql.DB
	where string
	v     probe.Version
	ka    *probe.Admin // the killer's connection
	spare *spareSet
	rep   fenceReport
}

func (f *serverFence) errorf(format string, a ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{f.where}, a...)...)
}

func (f *serverFence) run(ctx context.Context, killConn *sql.Conn) error {
	pr := probe.Prober{Q: killConn, QueryTimeout: f.e.Cfg.MySQL.QueryTimeout.Duration}
	v, _, err := pr.Version(ctx)
	if err != nil {
		return f.errorf("%w", err)
	}
	f.v, f.rep.Version = v, v
	f.ka = f.e.admin(killConn, v, f.where)
	id, err := f.ka.ConnectionID(ctx)
	if err != nil {
		return f.errorf("%w", err)
	}
	f.spare.add(id)
	// Replication threads running under an ordinary account are never
	// client sessions: killing the applier would stop replication.
	repl, err := f.ka.ReplicationThreads(ctx)
	if err != nil {
		f.e.Log.Warn("cannot list replication threads; an applier running as PRIVILEGE_CHECKS_USER may be taken for a client", "server", f.where, "err", err)
	}
	for id := range repl {
		f.spare.add(id)
	}
	f.standbySemiSync(ctx)

	// Attempts repeat until read_only is confirmed after the kills: a
	// promotion racing on that server may have opened writes meanwhile
	// (its connection is killed here, so it cannot do so twice).
	for attempt := 1; ; attempt++ {
		ok, err := f.attempt(ctx)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		f.e.Log.Warn("read_only found off after the kills; fencing again", "server", f.where, "attempt", attempt)
	}
	return f.waitStable(ctx)
}

// firstShot is read_only=ON before anything else, on a server that took
// long to greet: one that was frozen (SIGSTOP, swapping) answers the
// moment it runs again, with client writes queued beside this connection,
// and the reads the fence needs first (version, ids, threads) would leave
// them a few round trips. Under lock_wait_timeout=1 it cannot hang behind
// a write: the server gives up within a second and the verified fence with
// its killer follows. Its result does not matter: read_only=ON is always
// safe here.
func (f *serverFence) firstShot(ctx context.Context, c *sql.Conn) {
	if f.e.DryRun {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, firstShotBound)
	defer cancel()
	if _, err := c.ExecContext(sctx, "SET SESSION lock_wait_timeout = 1"); err == nil {
		_, _ = c.ExecContext(sctx, "SET GLOBAL read_only = ON")
	}
}

// standbySemiSync turns the source side of semi-sync off before the
// fence: a standby must never wait for acknowledgements. It comes first
// because a commit waiting for an acknowledgement that will not come (the
// other node dead) holds up SET GLOBAL read_only and the stable position
// for the whole semi-sync timeout; switching off releases it at once.
// Failing here does not fail the fence.
func (f *serverFence) standbySemiSync(ctx context.Context) {
	ss, err := f.ka.SemiSync(ctx)
	if err != nil {
		f.e.Log.Warn("cannot read the semi-sync state", "server", f.where, "err", err)
		return
	}
	f.rep.SemiSync = &ss
	if ss.ReplicaOn {
		reps, err := f.ka.Replicas(ctx)
		for i := range reps {
			f.rep.Acking = f.rep.Acking || (err == nil && semisync.SelfAcking(ss, &reps[i]))
		}
	}
	if !f.e.Cfg.SemiSync.Managed() || !ss.SourceEnabled {
		return
	}
	if err := f.ka.SetSemiSyncSource(ctx, ss, false); err != nil {
		f.e.Log.Warn("cannot switch the semi-sync source side off: a commit may wait for an acknowledgement up to the timeout", "server", f.where, "err", err)
		return
	}
	f.e.Log.Info("semi-sync source side off: a standby does not wait for acknowledgements", "server", f.where)
}

// waitStable returns once the server's own position has not moved over
// the stable window, killing again whatever moved it.
func (f *serverFence) waitStable(ctx context.Context) error {
	prev, err := f.ka.Position(ctx)
	if err != nil {
		return f.errorf("reading position: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return f.errorf("fence stopped with the position still moving (last %s): %w", prev, context.Cause(ctx))
		case <-time.After(f.e.Cfg.Notify.StableWindow.Duration):
		}
		cur, err := f.ka.Position(ctx)
		if err != nil {
			return f.errorf("reading position: %w", err)
		}
		if f.stable(ctx, prev, cur) || f.e.DryRun {
			f.rep.Position = cur
			return nil
		}
		f.e.Log.Warn("own position moved after read_only; killing again", "server", f.where, "was", prev, "now", cur)
		prev = cur
		if threads, err := f.ka.Processlist(ctx); err == nil {
			for _, t := range f.clients(threads) {
				_ = f.ka.Kill(ctx, t.ID)
				f.rep.Killed++
			}
		}
	}
}

// stable reports whether nothing this server's own clients could write
// came between two positions.
func (f *serverFence) stable(ctx context.Context, prev, cur probe.Position) bool {
	if samePosition(f.v, prev, cur) {
		return true
	}
	if prev.Own != "" || cur.Own != "" || prev.Binlog == nil || cur.Binlog == nil {
		return false
	}
	// No GTIDs to tell own writes from the peer's transactions this node
	// logs again (log_slave_updates): read what the binlog gained and look
	// for this server's own events.
	own, err := f.ka.OwnWritesBetween(ctx, cur.ServerID, *prev.Binlog, *cur.Binlog)
	if err != nil {
		f.e.Log.Warn("reading the binary log between two positions failed", "server", f.where, "err", err)
	}
	return err == nil && !own
}

// clients keeps the threads a fence must end.
func (f *serverFence) clients(threads []probe.Thread) []probe.Thread {
	sp := f.spare.snapshot()
	var out []probe.Thread
	for _, t := range threads {
		if t.Client(sp, f.e.Cfg.Notify.ExemptUsers) && !f.e.peerFencer(t) {
			out = append(out, t)
		}
	}
	return out
}

// roundPlan is what one reading of the processlist decides.
type roundPlan struct {
	// Kill are the sessions to KILL now (those the server refused to
	// end are not asked again).
	Kill []probe.Thread
	// Remaining counts the sessions that must be gone before the fence
	// may finish: those present when read_only took (all, before).
	Remaining int
	// Done: read_only is on and every session that must go is gone.
	Done bool
}

// planRound decides one round of the killer. mustGo is nil until read_only
// took; then it is fixed to the client sessions present at that moment —
// sessions opened later cannot write (read_only) and are killed but not
// waited for.
func planRound(clients []probe.Thread, roOn bool, mustGo map[uint64]bool, denied map[uint64]string) (roundPlan, map[uint64]bool) {
	if roOn && mustGo == nil {
		mustGo = map[uint64]bool{}
		for _, t := range clients {
			mustGo[t.ID] = true
		}
	}
	var p roundPlan
	for _, t := range clients {
		if denied[t.ID] != "" {
			continue
		}
		p.Kill = append(p.Kill, t)
		if mustGo == nil || mustGo[t.ID] {
			p.Remaining++
		}
	}
	p.Done = roOn && p.Remaining == 0
	return p, mustGo
}

// attempt sets read_only on one connection while killing client threads
// on another, until read_only took and every client thread present at
// that moment is gone; then it reports whether read_only is (still) on.
func (f *serverFence) attempt(ctx context.Context) (bool, error) {
	e, where := f.e, f.where
	roDone := make(chan error, 1)
	roCtx, roCancel := context.WithCancel(ctx)
	defer roCancel()
	start := time.Now()
	go func() { roDone <- f.setReadOnlyLoop(roCtx) }()

	// Killer: this goroutine.
	roOn := false
	var mustGo map[uint64]bool    // client threads present when read_only took
	denied := map[uint64]string{} // sessions the server refused to kill
	for {
		if !roOn {
			select {
			case err := <-roDone:
				if err != nil {
					return false, err
				}
				roOn = true
				e.Log.Info("read_only is on", "server", where, "took", time.Since(start).Round(time.Microsecond))
			default:
			}
		}
		threads, err := f.ka.Processlist(ctx)
		if err != nil {
			return false, f.errorf("%w", err)
		}
		f.rep.Rounds++
		clients := f.clients(threads)
		var plan roundPlan
		plan, mustGo = planRound(clients, roOn, mustGo, denied)
		if plan.Done {
			if len(denied) > 0 {
				if err := e.unkillable(f.v, denied, where, &f.rep, clients); err != nil {
					return false, err
				}
			}
			if len(plan.Kill) > 0 {
				// Sessions opened after read_only took cannot write (SUPER
				// users aside, and the stable-position check below
				// catches those); they are killed but not waited for.
				e.Log.Info("new sessions keep arriving; killed, not waited for", "server", where, "count", len(plan.Kill))
			}
			break
		}
		f.kill(ctx, plan.Kill, denied)
		if e.DryRun {
			// Nothing was killed or set: one round is the whole plan.
			if !roOn {
				if err := <-roDone; err != nil {
					return false, err
				}
			}
			break
		}
		select {
		case <-ctx.Done():
			if len(denied) > 0 && !roOn {
				return false, f.errorf("read_only could not be set while sessions the fence may not end are there (%s): %w",
					deniedSummary(denied), context.Cause(ctx))
			}
			return false, f.errorf("fence stopped with %d client threads still there: %w", plan.Remaining, context.Cause(ctx))
		case <-time.After(killPoll):
		}
	}

	// Verify: read_only on.
	ro, sro, err := f.ka.ReadOnly(ctx)
	if err != nil {
		return false, f.errorf("confirming read_only: %w", err)
	}
	if !e.DryRun && (!ro || (probe.ReadOnlyStopsEveryone(f.v) && !sro)) {
		return false, nil
	}
	return true, nil
}

// kill sends a server-side KILL to each thread, remembering the ones the
// server refused: asking again would not change its answer.
func (f *serverFence) kill(ctx context.Context, threads []probe.Thread, denied map[uint64]string) {
	for _, t := range threads {
		if t.Command != "Killed" {
			msg := "killing client thread"
			if f.e.DryRun {
				msg = "would kill client thread"
			}
			f.e.Log.Info(msg, "server", f.where, "id", t.ID, "user", t.User,
				"host", t.Host, "command", t.Command, "time", t.Time, "state", t.State, "info", t.Info)
		}
		if err := f.ka.Kill(ctx, t.ID); errors.Is(err, probe.ErrKillDenied) {
			denied[t.ID] = err.Error()
			f.e.Log.Error("KILL REFUSED: this session cannot be ended", "server", f.where, "id", t.ID,
				"user", t.User, "host", t.Host, "err", err)
		} else if err != nil {
			// One failing KILL never stops the others.
			f.e.Log.Warn("kill failed", "server", f.where, "id", t.ID, "err", err)
		}
		f.rep.Killed++
	}
}

// unkillable decides what a fence does about client sessions the server
// refused to end, once read_only is on and every other session is gone.
// Where read_only stops every session (MySQL's super_read_only) they can
// no longer write: the fence goes on and says which sessions stay. Where
// it does not (MariaDB: READ_ONLY ADMIN holders write through read_only),
// such a session may still write, so the fence fails: a node that may still
// take writes must never look fenced, and a peer's promotion refuses on it.
func (e *Engine) unkillable(v probe.Version, denied map[uint64]string, where string, rep *fenceReport, clients []probe.Thread) error {
	rep.Unkillable = rep.Unkillable[:0]
	for _, t := range clients {
		if denied[t.ID] != "" {
			rep.Unkillable = append(rep.Unkillable, fmt.Sprintf("%d %s@%s", t.ID, t.User, t.Host))
		}
	}
	if len(rep.Unkillable) == 0 {
		return nil // they ended by themselves
	}
	if probe.ReadOnlyStopsEveryone(v) {
		e.Log.Warn("sessions the fence may not end stay connected; super_read_only stops their writes",
			"server", where, "sessions", strings.Join(rep.Unkillable, ", "), "err", deniedSummary(denied))
		return nil
	}
	return fmt.Errorf("%s: %w: sessions %s may still write through read_only (%s)", where, ErrUnkillable,
		strings.Join(rep.Unkillable, ", "), deniedSummary(denied))
}

// deniedSummary is the first refusal's message: they all name the same
// missing privilege.
func deniedSummary(denied map[uint64]string) string {
	for _, msg := range denied {
		return msg
	}
	return ""
}

// peerFencer reports whether t is the peer's notify fencing this server
// (peer.user over TCP from peer.host). Both fences run at once in every
// failover (the old writer's BACKUP, the new one's MASTER); killing each
// other's connections would only make both start over. Local sessions of
// the same account (a promotion running here) are not spared: the peer's
// fence must end them.
func (e *Engine) peerFencer(t probe.Thread) bool {
	p := e.Cfg.Peer
	if p.Host == "" || t.User != p.User {
		return false
	}
	host, _, err := net.SplitHostPort(t.Host)
	if err != nil || host == "localhost" || host == "" {
		return false
	}
	want, perr := netip.ParseAddr(p.Host)
	if perr != nil {
		return true // a host name: any TCP session of the peer's account
	}
	got, err := netip.ParseAddr(host)
	return err == nil && got.Unmap() == want.Unmap()
}

// samePosition compares what only this server's own writes move: its own
// GTIDs when known (replicated events from the peer keep being logged with
// log_slave_updates), else the binlog coordinates (the caller then reads
// what lies between them).
func samePosition(v probe.Version, a, b probe.Position) bool {
	if v.Flavor == probe.MariaDB || a.GTID != "" {
		return a.Own == b.Own
	}
	if a.Binlog == nil || b.Binlog == nil {
		return a.Binlog == nil && b.Binlog == nil
	}
	return *a.Binlog == *b.Binlog
}

// setReadOnlyLoop sets read_only on its own connection, retrying after
// lock-wait timeouts and reconnecting if the connection is lost (another
// fence may have killed it).
func (f *serverFence) setReadOnlyLoop(ctx context.Context) error {
	e, where := f.e, f.where
	var lastErr error
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: setting read_only: %w (last error: %v)", where, context.Cause(ctx), lastErr)
		}
		err := func() error {
			c, err := f.db.Conn(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			a := e.admin(c, f.v, where)
			id, err := a.ConnectionID(ctx)
			if err != nil {
				return err
			}
			f.spare.add(id)
			if err := a.SetLockWaitTimeout(ctx); err != nil {
				return err
			}
			for {
				err := a.SetReadOnly(ctx, true, setReadOnlyBound)
				if !errors.Is(err, probe.ErrLockWait) {
					return err
				}
				e.Log.Info("read_only waits behind a running write; retrying while killing", "server", where, "attempt", attempt)
				attempt++
			}
		}()
		if err == nil {
			return nil
		}
		lastErr = err
		e.Log.Warn("setting read_only failed; retrying", "server", where, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// hung reports whether err means the server did not answer in time (frozen
// or overloaded), as opposed to not running at all: a mysqld that is not
// running comes back read-only (my.cnf), a hung one comes back as it was.
func hung(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// awaitGreeting returns once the local server greets a new connection,
// or ctx ends. A hung (frozen) server greets the moment it runs again; one
// attempt stays pending all along (its socket deadline is as long as the
// retry), so the fence that follows starts right then, not after the next
// retry's sleep while the thawed server already takes client writes.
func (e *Engine) awaitGreeting(ctx context.Context) error {
	t := e.localTarget()
	t.QueryTimeout = fenceRetryFor
	db, err := probe.Open(t)
	if err != nil {
		return err
	}
	defer db.Close()
	for {
		c, err := db.Conn(ctx)
		if err == nil {
			return c.Close()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fenceWhenBack retries the local fence until it succeeds, this run is
// superseded, or fenceRetryFor passes.
func (e *Engine) fenceWhenBack(parent context.Context, gen uint64, db *sql.DB) (fenceReport, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), fenceRetryFor)
	defer cancel()
	ctx, unwatch := e.watch(ctx, gen)
	defer unwatch()
	done := e.step("fence.local.retry", "for", fenceRetryFor)
	for attempt := 1; ; attempt++ {
		if err := e.awaitGreeting(ctx); err != nil {
			done(err, "attempts", attempt)
			return fenceReport{}, err
		}
		actx, acancel := context.WithTimeout(ctx, e.Cfg.Notify.FenceTimeout.Duration)
		rep, err := e.fenceServer(actx, db, "local")
		acancel()
		if err == nil {
			done(nil, "attempts", attempt)
			return rep, nil
		}
		if ctx.Err() != nil {
			done(err, "attempts", attempt)
			return rep, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// fence handles BACKUP, FAULT, STOP and DELETED on this node.
func (e *Engine) fence(parent context.Context, ev Event, gen uint64) error {
	stop := ev.State == "STOP" || ev.State == "DELETED"
	// A STOP must fit before keepalived's SIGKILL: urgent steps first.
	budget, fenceFor, lockWait := fenceBudget(e.Cfg.Notify, stop)
	e.plan("plan for %s: reset stale VIP clients (at STOP: after the fence), fence this node (read_only=ON while killing client threads, confirm, record position; a hung server: close its TCP sessions), verify replication", ev)
	// A fence is not stopped by SIGTERM: finishing it only makes the node
	// safer. Only a newer event (or its own deadline) ends it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), budget)
	defer cancel()
	ctx, unwatch := e.watch(ctx, gen)
	defer unwatch()
	all := e.step("fence", "budget", budget)
	superseded := func() error { all(ErrSuperseded); return ErrSuperseded }

	l, err := e.runLock(ctx, lockWait)
	if isSuperseded(ctx) {
		return superseded()
	}
	if err != nil {
		e.Log.Warn("run lock busy; fencing without it (read_only=ON is always safe)")
	}
	defer l.Unlock()
	e.writeOutcome(gen, state.Outcome{Event: ev.State, Phase: state.PhaseRunning, Role: state.RoleStandby})

	db, err := open(e.localTarget())
	if err != nil {
		all(err)
		return err
	}
	defer db.Close()

	if !stop {
		// Before the fence, not after it: the VIP's clients are stale
		// already (the address left), and a hung server holds the fence
		// for as long as it hangs. The reset runs detached.
		e.resetStaleClients(ctx)
		var cut sync.WaitGroup
		cut.Add(1)
		go func() { defer cut.Done(); e.cutHungClients(ctx) }()
		defer cut.Wait()
	}
	rep, err := e.fenceLocal(ctx, db, fenceFor)
	if isSuperseded(ctx) {
		return superseded()
	}
	if err != nil {
		o, retry := fenceFailedRule(ev.State, err, rep.Version.Flavor != 0, stop)
		e.writeOutcome(gen, o)
		if retry {
			// Unreachable is not unwritable: keep trying while this is
			// the newest event, without the run lock, so read_only lands
			// the moment the server answers.
			l.Unlock()
			if late, lerr := e.fenceWhenBack(parent, gen, db); lerr == nil {
				e.writeOutcome(gen, lateFencedOutcome(ev.State, late.Position))
				all(nil, "late", true)
				return nil
			}
			e.writeOutcome(gen, state.Outcome{Event: ev.State, Phase: state.PhaseFailed, Role: state.RoleStandby, Reason: "fence failed: " + err.Error()})
		}
		all(err)
		return fmt.Errorf("fencing local server: %w", err)
	}
	pos := rep.Position
	// Recorded at once: keepalived may SIGKILL a STOP run any moment now.
	e.writeOutcome(gen, state.Outcome{Event: ev.State, Phase: state.PhaseRunning, Role: state.RoleStandby,
		FinalPosition: pos.String(), Position: toState(pos)})
	if stop {
		e.resetStaleClients(ctx)
	}

	why := ""
	if stop {
		// Best effort in what is left of the second; nothing is
		// restarted at shutdown (mysqld may be stopping too).
		e.Log.Info("STOP: replication check skipped")
	} else {
		why = e.verifyReplication(ctx, db, rep.Version)
		if isSuperseded(ctx) {
			return superseded()
		}
	}
	o := fencedOutcome(ev.State, pos, why)
	e.writeOutcome(gen, o)
	all(nil, "position", pos, "unfit", o.Unfit)
	if o.Unfit {
		return fmt.Errorf("replication: %s", why)
	}
	return nil
}

// fenceLocal fences the local server within fenceFor. The peer's promotion
// fences this server too and kills our connections: harmless, it starts
// over on fresh ones.
func (e *Engine) fenceLocal(ctx context.Context, db *sql.DB, fenceFor time.Duration) (fenceReport, error) {
	fctx, fcancel := context.WithTimeout(ctx, fenceFor)
	defer fcancel()
	done := e.step("fence.local")
	rep, err := e.fenceServer(fctx, db, "local")
	for probe.ConnectionLost(err) && fctx.Err() == nil {
		e.Log.Info("fence connection killed (the peer is fencing too); again", "err", err)
		rep, err = e.fenceServer(fctx, db, "local")
	}
	done(err, e.killedKey(), rep.Killed, "rounds", rep.Rounds, "position", rep.Position)
	return rep, err
}

// fenceFailedRule decides what a failed local fence leaves. A server that
// answered but could not be fenced must not look fit. One that never
// answered in time (frozen, swapping, hung) is not thereby unwritable: it
// comes back exactly as it was, so the fence goes on trying (retry) — but
// not at STOP, which has no time, and not when it is simply not running
// (a restarted mysqld comes back read-only from my.cnf).
func fenceFailedRule(event string, err error, reached, stop bool) (o state.Outcome, retry bool) {
	o = state.Outcome{Event: event, Phase: state.PhaseFailed, Role: state.RoleStandby, Reason: "fence failed: " + err.Error(), Unfit: reached}
	if !reached && !stop && hung(err) {
		o.Reason = "fence failed, retrying until the server answers: " + err.Error()
		return o, true
	}
	return o, false
}

// lateFencedOutcome is what a fence that succeeded once a hung server
// answered leaves.
func lateFencedOutcome(event string, pos probe.Position) state.Outcome {
	return state.Outcome{Event: event, Phase: state.PhaseDone, Role: state.RoleStandby,
		FinalPosition: pos.String(), Position: toState(pos),
		Reason: "fenced late: the server did not answer at first; replication is verified by the next event"}
}

// fencedOutcome is what a completed fence leaves: a standby, unfit when it
// does not replicate (problem says why).
func fencedOutcome(event string, pos probe.Position, problem string) state.Outcome {
	o := state.Outcome{Event: event, Phase: state.PhaseDone, Role: state.RoleStandby,
		Reason: problem, FinalPosition: pos.String(), Position: toState(pos)}
	if problem != "" {
		o.Phase, o.Unfit = state.PhaseFailed, true
	}
	return o
}

// cutHungClients closes the local server's TCP sessions when it does not
// greet a new connection within hungGreeting. A hung server that runs
// again finishes the statements it already holds before any fence can
// land, and would acknowledge them to their clients although the VIP has
// left and the peer may be taking writes; the VIP's own clients cannot
// hear it any more, but those that came through a node address can. With
// their sessions closed those acknowledgements reach no one. The peer's
// sessions (its replication, its fence of this node) are spared, and so
// are the VIP's.
func (e *Engine) cutHungClients(ctx context.Context) {
	if e.CutClients == nil || !*e.Cfg.Notify.ResetClients {
		return
	}
	db, err := open(e.localTarget())
	if err != nil {
		return
	}
	defer db.Close()
	gctx, cancel := context.WithTimeout(ctx, hungGreeting)
	c, err := db.Conn(gctx)
	cancel()
	if err == nil {
		c.Close()
		return
	}
	if ctx.Err() != nil || !hung(err) {
		return // not running, or this run is over: nothing to cut
	}
	port := e.Cfg.MySQL.Port
	done := e.step("cut_clients", "port", port, "why", "the server did not greet within "+hungGreeting.String())
	if e.DryRun {
		e.plan("  would close the TCP sessions of port %d but the peer's", port)
		done(nil)
		return
	}
	s := tcpreset.Sessions{Port: uint16(port), SpareFrom: e.peerAddrs(ctx)}
	if vip, err := netip.ParseAddr(e.Cfg.VIP.Address); err == nil {
		// The VIP's clients can no longer hear this node (the VIP left);
		// resetStaleClients tells them so, which a cut here would prevent.
		s.SpareTo = []netip.Addr{vip}
	}
	n, err := e.CutClients(s)
	done(err, "closed", n)
}

// peerAddrs returns the peer's addresses (none when unknown): its
// sessions are not clients to cut.
func (e *Engine) peerAddrs(ctx context.Context) []netip.Addr {
	h := e.Cfg.Peer.Host
	if h == "" {
		return nil
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return []netip.Addr{a}
	}
	lctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	as, err := net.DefaultResolver.LookupNetIP(lctx, "ip", h)
	if err != nil {
		e.Log.Warn("cannot resolve the peer: its sessions are cut too", "peer", h, "err", err)
	}
	return as
}

// resetStaleClients resets the VIP's stale TCP clients, when configured.
func (e *Engine) resetStaleClients(ctx context.Context) {
	vip := e.Cfg.VIP.Address
	if vip == "" || !*e.Cfg.Notify.ResetClients || e.ResetClients == nil {
		return
	}
	done := e.step("reset_clients", "vip", vip)
	if e.DryRun {
		e.plan("  would reset stale TCP clients of %s and close the local sockets", vip)
		done(nil)
		return
	}
	done(e.ResetClients(ctx, vip, e.Log))
}

// verifyReplication makes sure the fenced node replicates, within
// replication_timeout, and returns the problem ("" when it does).
func (e *Engine) verifyReplication(ctx context.Context, db *sql.DB, v probe.Version) string {
	rctx, rcancel := context.WithTimeout(ctx, e.Cfg.Notify.ReplicationTimeout.Duration)
	defer rcancel()
	done := e.step("replication")
	why, err := e.ensureReplication(rctx, db, v)
	done(err, "problem", why)
	if err != nil {
		why = err.Error()
	}
	if why != "" {
		e.Log.Error("NOT REPLICATING: this node is marked unfit for promotion", "reason", why)
	}
	return why
}

// ensureReplication makes sure this node replicates and ends with the IO
// and SQL threads running, verified. It returns a problem ("" when fine).
// An IO thread that only cannot reach its source (the peer is down) counts
// as running: it will connect when the peer is back.
func (e *Engine) ensureReplication(ctx context.Context, db *sql.DB, v probe.Version) (string, error) {
	c, err := db.Conn(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	a := e.admin(c, v, "local")
	reps, err := a.Replicas(ctx)
	if err != nil {
		return "", err
	}
	if len(reps) == 0 {
		return "no replication channel is configured: this node cannot have the writer's data", nil
	}
	if p := e.Cfg.Peer.Host; p != "" {
		found := false
		for _, r := range reps {
			found = found || r.SourceHost == p
		}
		if !found {
			e.Log.Warn("no replication channel reads from peer.host", "peer", p, "source", reps[0].SourceHost)
		}
	}
	started := false
	for {
		var bad, pending []string
		for _, r := range reps {
			switch h := r.Health(); {
			case h == probe.Starting && started:
				// Just started: not verified yet, not failed either.
				pending = append(pending, fmt.Sprintf("channel %q: IO thread %s", r.Channel, r.IORunning))
			case h.Broken() || r.NeedsStart():
				p := r.Problem()
				if p == "" {
					p = fmt.Sprintf("channel %q: IO thread %s after error %d %s", r.Channel, r.IORunning, r.IOErrno, probe.OneLine(r.IOError))
				}
				bad = append(bad, p)
			}
		}
		if len(bad) == 0 && (len(pending) == 0 || ctx.Err() != nil) {
			for _, r := range reps {
				if r.Health() == probe.SourceUnreachable {
					e.Log.Warn("replication source unreachable; IO thread keeps retrying", "channel", r.Channel, "source", r.SourceHost, "errno", r.IOErrno)
				}
			}
			return "", nil
		}
		if !started {
			e.Log.Warn("replication not running; starting it", "problem", strings.Join(bad, "; "))
			if err := a.StartReplication(ctx); err != nil {
				e.Log.Error("starting replication failed", "err", err)
			}
			started = true
			if e.DryRun {
				return "", nil
			}
		}
		if len(bad) > 0 && ctx.Err() != nil {
			return strings.Join(bad, "; ") + " (after START)", nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
		if ctx.Err() != nil {
			if len(bad) > 0 {
				return strings.Join(bad, "; ") + " (after START)", nil
			}
			continue // only pending: the check above accepts them now
		}
		if reps, err = a.Replicas(ctx); err != nil {
			if ctx.Err() != nil {
				continue
			}
			return "", err
		}
	}
}

// killedKey names the kill count in step logs: a dry run kills nothing.
func (e *Engine) killedKey() string {
	if e.DryRun {
		return "would_kill"
	}
	return "killed"
}
