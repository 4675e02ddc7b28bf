package fence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/semisync"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
)

// promoteAttempts bounds retries after the peer's fence killed our
// connection. keepalived never repeats a MASTER, so a node still holding the
// newest event tries again; two nodes both MASTER (split brain) keep
// fencing each other and end read-only, the safe side.
const promoteAttempts = 3

// promote handles MASTER: fence the peer, wait for catch-up, apply the
// policy, open writes — unless a newer event or a signal comes first.
func (e *Engine) promote(parent context.Context, ev Event, gen uint64) error {
	for attempt := 1; ; attempt++ {
		err := e.promoteOnce(parent, ev, gen)
		if !errors.Is(err, ErrPreempted) || attempt == promoteAttempts || parent.Err() != nil {
			return err
		}
		// Jitter breaks the symmetry of two nodes preempting each other.
		time.Sleep(150*time.Millisecond + time.Duration(rand.Int64N(int64(200*time.Millisecond))))
		if ok, err := e.dir().Current(gen); err != nil || !ok {
			return ErrSuperseded
		}
		e.Log.Warn("promotion preempted but still the newest event; trying again", "attempt", attempt+1)
	}
}

// promotion is one attempt at MASTER: its context, and the step log that
// ends with the attempt's result.
type promotion struct {
	e      *Engine
	ev     Event
	gen    uint64
	parent context.Context // cancelled by a signal
	ctx    context.Context // also by the budget and a newer event
	all    func(err error, more ...any)
}

// end turns an abort into the documented result: superseded runs leave
// everything to the newer event; a signal leaves the node read-only.
func (p *promotion) end(err error) error {
	if isSuperseded(p.ctx) {
		p.all(ErrSuperseded)
		return ErrSuperseded
	}
	if p.parent.Err() != nil {
		p.e.leaveReadOnly()
		o, ierr := interruptedOutcome(p.ev.State)
		p.e.writeOutcome(p.gen, o)
		p.all(ierr)
		return ierr
	}
	p.all(err)
	return err
}

// stop applies a rule that ended the promotion.
func (p *promotion) stop(v verdict) error {
	p.e.Log.Error("PROMOTION REFUSED: " + v.Outcome.Reason)
	p.e.writeOutcome(p.gen, v.Outcome)
	return p.end(v.Err)
}

// preempted ends the promotion when the peer killed our connection.
func (p *promotion) preempted(err error) error {
	p.e.Log.Warn("promotion connection killed: the peer is fencing this node; staying read-only", "err", err)
	p.e.leaveReadOnly()
	o, perr := preemptedOutcome(p.ev.State, err)
	p.e.writeOutcome(p.gen, o)
	return p.end(perr)
}

func (e *Engine) promoteOnce(parent context.Context, ev Event, gen uint64) error {
	n := e.Cfg.Notify
	e.planPromotion(ev)
	budget := promoteBudget(n) + e.Cfg.SemiSync.FallenBackWait.Duration
	ctx, cancel := context.WithTimeout(parent, budget)
	defer cancel()
	ctx, unwatch := e.watch(ctx, gen)
	defer unwatch()
	p := &promotion{e: e, ev: ev, gen: gen, parent: parent, ctx: ctx,
		all: e.step("promote", "policy", n.Policy, "promotion_timeout", n.PromotionTimeout.Duration)}

	l, err := e.runLock(ctx, budget)
	if err != nil {
		return p.end(err)
	}
	defer l.Unlock()
	e.writeOutcome(gen, state.Outcome{Event: ev.State, Phase: state.PhaseRunning, Role: state.RoleStandby})
	m, merr := e.dir().Maintenance()
	if v := maintenanceRule(ev.State, m, merr); v.Stop {
		return p.stop(v)
	}

	local, err := e.openLocal(ctx)
	if err != nil {
		e.writeOutcome(gen, state.Outcome{Event: ev.State, Phase: state.PhaseFailed, Role: state.RoleStandby, Reason: "local server unreachable"})
		return p.end(err)
	}
	defer local.close()
	a, selfID := local.admin, local.serverID

	// 0. This node no longer waits for acknowledgements: its applier
	// must not stall on a dead peer while the gate waits for it.
	pairUses := p.releaseSemiSync(a)

	// The relay log as it stands before the peer fence: should the peer
	// not answer, the gate compares against this reading instead of
	// taking a first one and waiting a whole step after the fence.
	early, _ := e.readRelay(ctx, a)

	// 1. Fence the peer and take its final position.
	peerPos, peerAcking, v := p.fencePeer()
	if ctx.Err() != nil {
		return p.end(ctx.Err())
	}
	if v.Stop {
		return p.stop(v)
	}

	// 1b. Without the old writer's final position, what semi-sync can
	// promise about its acknowledged writes.
	ssCase := state.SemiSyncFenced
	if peerPos == nil {
		ssCase, peerPos, v = p.semiSyncPromise(pairUses)
		if ctx.Err() != nil {
			return p.end(ctx.Err())
		}
		if v.Stop {
			return p.stop(v)
		}
	}

	// 2. Catch-up gate, and the policy on its verdict.
	done := e.step("gate")
	met, why, err := e.gate(ctx, a, selfID, peerPos, early)
	done(err, "met", met, "why", why)
	if ctx.Err() != nil {
		return p.end(ctx.Err())
	}
	if probe.ConnectionLost(err) {
		return p.preempted(err)
	}
	if err != nil {
		met, why = false, err.Error()
	}
	if v := gateRule(ev.State, met, why, n.Policy); v.Stop {
		return p.stop(v)
	} else if v.Warn != "" {
		e.Log.Error(v.Warn)
	}

	// 3. Open writes, only if still the newest event; the writer waits
	// for acknowledgements from then on when a replica gives them.
	p.writerSemiSync(a, peerAcking)
	opened, err := e.openWrites(ctx, a, gen)
	if probe.ConnectionLost(err) {
		return p.preempted(err)
	}
	if err != nil {
		// Never leave a half-open node: close again what may have opened.
		e.leaveReadOnly()
		o, oerr := openFailedOutcome(ev.State, err)
		e.writeOutcome(gen, o)
		return p.end(oerr)
	}
	if !opened {
		p.all(ErrSuperseded)
		return ErrSuperseded
	}
	e.writeOutcome(gen, openedOutcome(ev.State, met, why, ssCase))
	p.all(nil, "caught_up", met)
	return nil
}

// localSession is the promotion's one connection to the local server.
type localSession struct {
	db       *sql.DB
	conn     *sql.Conn
	admin    *probe.Admin
	serverID uint32
}

func (s *localSession) close() {
	s.conn.Close()
	s.db.Close()
}

// openLocal connects to the local server and reads its version.
func (e *Engine) openLocal(ctx context.Context) (*localSession, error) {
	db, err := open(e.localTarget())
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to local server: %w", err)
	}
	v, id, err := (&probe.Prober{Q: conn, QueryTimeout: e.Cfg.MySQL.QueryTimeout.Duration}).Version(ctx)
	if err != nil {
		conn.Close()
		db.Close()
		return nil, fmt.Errorf("local server: %w", err)
	}
	return &localSession{db: db, conn: conn, admin: e.admin(conn, v, "local"), serverID: id}, nil
}

// fencePeer fences the peer and applies peerRule: its final position, or
// nil when it does not answer and the promotion may go on without it;
// acking says whether the fenced peer acknowledges this node (semi-sync).
func (p *promotion) fencePeer() (pos *probe.Position, acking bool, v verdict) {
	pos, reached, acking, err := p.e.fencePeer(p.ctx)
	var w *check.Witness
	if err != nil && !reached && p.ctx.Err() == nil {
		// Silent: dead, or this node is the one cut off. mysqlcheck will
		// fail here too, but this event must not open writes meanwhile.
		w = check.AskWitnesses(p.ctx, p.e.Cfg)
		p.e.Log.Warn("peer not reachable: waiting for what this node already received instead", "err", err, "witness", w.Describe())
	}
	v = peerRule(p.ev.State, peerFinding{Reached: reached, Err: err}, w)
	if v.Warn != "" {
		p.e.Log.Warn(v.Warn)
	}
	return pos, acking, v
}

// planPromotion says in a dry run what a promotion would do.
func (e *Engine) planPromotion(ev Event) {
	n := e.Cfg.Notify
	e.plan("plan for %s: fence the peer %s:%d (if reachable), wait until this node applied its final position (at most %s, policy %s), then read_only=OFF",
		ev, e.Cfg.Peer.Host, e.Cfg.Peer.Port, n.PromotionTimeout.Duration, n.Policy)
	set, err := check.Witnesses(e.Cfg)
	switch {
	case err != nil:
		e.plan("plan for %s: if the peer does not answer, refuse: %v", ev, err)
	case len(set.Addrs) > 0:
		e.plan("plan for %s: if the peer does not answer, go on only if a %s witness answers (%s)", ev, set.Source, strings.Join(set.Addrs, ", "))
	default:
		e.plan("plan for %s: if the peer does not answer, go on without a witness (%s)", ev, witness.NoWitnessWarning)
	}
}

// openWrites turns read_only off, verified, while this run's event is
// still the newest: first ending any stale SET read_only session. opened
// is false when a newer event took over first.
func (e *Engine) openWrites(ctx context.Context, a *probe.Admin, gen uint64) (opened bool, err error) {
	done := e.step("open_writes")
	defer func() { done(err, "opened", opened) }()
	if e.DryRun {
		return true, a.SetReadOnly(ctx, false, 0)
	}
	lctx, lcancel := context.WithTimeout(ctx, openWritesBound)
	defer lcancel()
	return e.dir().WhileCurrent(lctx, gen, func() error {
		if err := e.sweepReadOnlySetters(lctx, a); err != nil {
			return err
		}
		if err := a.SetReadOnly(lctx, false, openReadOnlyBound); err != nil {
			return err
		}
		ro, sro, err := a.ReadOnly(lctx)
		if err != nil {
			return fmt.Errorf("verifying read_only: %w", err)
		}
		if ro || sro {
			return fmt.Errorf("read_only=%v super_read_only=%v after opening writes", ro, sro)
		}
		return nil
	})
}

// leaveReadOnly sets read_only=ON on the local server, best effort, within
// a short deadline of its own (used after a signal or a failed open).
func (e *Engine) leaveReadOnly() {
	if e.DryRun {
		return
	}
	done := e.step("leave_read_only")
	ctx, cancel := context.WithTimeout(context.Background(), leaveReadOnlyBound)
	defer cancel()
	err := func() error {
		db, err := open(e.localTarget())
		if err != nil {
			return err
		}
		defer db.Close()
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		v, _, err := (&probe.Prober{Q: c, QueryTimeout: time.Second}).Version(ctx)
		if err != nil {
			return err
		}
		a := e.admin(c, v, "local")
		if err := a.SetLockWaitTimeout(ctx); err != nil {
			return err
		}
		return a.SetReadOnly(ctx, true, 1500*time.Millisecond)
	}()
	done(err)
}

// fencePeer fences the peer over TCP within notify.peer_timeout and
// returns its final position. reached says whether the peer answered at
// all (it read the server version): a peer that answers but could not be
// fenced must block the promotion, an unreachable one must not.
func (e *Engine) fencePeer(ctx context.Context) (pos *probe.Position, reached, acking bool, err error) {
	if e.Cfg.Peer.Host == "" {
		return nil, false, false, errNoPeer
	}
	t := e.peerTarget()
	done := e.step("fence.peer", "peer", t.String())
	pctx, cancel := context.WithTimeout(ctx, e.Cfg.Notify.PeerTimeout.Duration)
	defer cancel()
	db, err := open(t)
	if err != nil {
		done(err)
		return nil, false, false, err
	}
	defer db.Close()
	if err := e.greetPeer(pctx, db); err != nil {
		done(err)
		return nil, false, false, err
	}
	rep, err := e.fenceServer(pctx, db, "peer")
	for probe.ConnectionLost(err) && pctx.Err() == nil {
		e.Log.Info("peer fence connection lost; again", "err", err)
		rep, err = e.fenceServer(pctx, db, "peer")
	}
	done(err, e.killedKey(), rep.Killed, "position", rep.Position)
	if err != nil {
		return nil, rep.Version.Flavor != 0, false, err
	}
	return &rep.Position, true, rep.Acking, nil
}

// errPeerSilent says the peer's server took the connection but did not
// greet within notify.peer_connect_timeout: a frozen mysqld (the kernel
// accepts for it) or a dead host behind a slow network.
var errPeerSilent = errors.New("peer's server did not greet")

// greetPeer opens one connection to the peer within
// notify.peer_connect_timeout and leaves it idle in the pool for the fence.
// A live server greets within milliseconds even on a saturated host
// (BenchmarkPeerGreetingSaturated); one that does not would hold the
// promotion for the whole peer_timeout before counting as unreachable.
func (e *Engine) greetPeer(ctx context.Context, db *sql.DB) error {
	bound := e.Cfg.Notify.PeerConnectTimeout.Duration
	gctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	c, err := db.Conn(gctx)
	if err != nil {
		if gctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("%w within notify.peer_connect_timeout %s: %v", errPeerSilent, bound, err)
		}
		return fmt.Errorf("connecting to peer: %w", err)
	}
	return c.Close()
}

// gate waits, within notify.promotion_timeout, until this node has applied
// everything the old writer wrote: its final position when known, else
// everything already received in the relay log. It never trusts a single
// wait call: each step is short and the verdict is re-read each time, so a
// wait that stalls short of its target costs one step.
func (e *Engine) gate(ctx context.Context, a *probe.Admin, selfID uint32, peer *probe.Position, early *relayReading) (bool, string, error) {
	limit := e.Cfg.Notify.PromotionTimeout.Duration
	if e.Cfg.Notify.Policy == config.PolicyAvailability {
		// Availability first opens writes at once: one short look at the
		// relay log (for the log), no waiting.
		limit = 0
	}
	deadline := time.Now().Add(limit)
	var why string
	lastLog := time.Time{}
	for {
		met, w, err := e.caughtUp(ctx, a, selfID, peer, gateStep, early)
		early = nil
		if err != nil {
			if ctx.Err() != nil {
				return false, why, ctx.Err()
			}
			if probe.ConnectionLost(err) {
				return false, why, err
			}
			// A failed read is not a verdict: retry until the deadline.
			w = err.Error()
		}
		why = w
		if met {
			return true, "", nil
		}
		if e.DryRun {
			return true, "dry-run: gate not waited for (" + why + ")", nil
		}
		if time.Now().After(deadline) {
			return false, fmt.Sprintf("not caught up after %s: %s", limit, why), nil
		}
		if time.Since(lastLog) >= time.Second {
			e.Log.Info("waiting for catch-up", "behind", why, "left", time.Until(deadline).Round(time.Millisecond))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return false, why, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// relayReading is one reading of the replication channels, and when it
// was taken.
type relayReading struct {
	at time.Time
	rs []probe.Replica
}

// readRelay reads the channels now.
func (e *Engine) readRelay(ctx context.Context, a *probe.Admin) (*relayReading, error) {
	rs, err := a.Replicas(ctx)
	if err != nil {
		return nil, err
	}
	return &relayReading{at: time.Now(), rs: rs}, nil
}

// caughtUp checks once, waiting at most about step, and says what is
// missing when not caught up. Without the peer's position it judges two
// readings at least step apart; prev, when given, is the first of them.
func (e *Engine) caughtUp(ctx context.Context, a *probe.Admin, selfID uint32, peer *probe.Position, step time.Duration, prev *relayReading) (bool, string, error) {
	if peer != nil && peer.GTID != "" {
		ok, behind, err := a.Applied(ctx, peer.GTID)
		if err != nil || ok {
			return ok, behind, err
		}
		want := peer.GTID
		if a.V.Flavor == probe.MariaDB {
			// MASTER_GTID_WAIT watches gtid_slave_pos: only what this
			// node receives by replication can be waited for there.
			if want, err = probe.ForeignMariaDBGTIDs(peer.GTID, selfID); err != nil {
				return false, "", err
			}
		}
		if _, err := a.WaitGTID(ctx, want, step); err != nil {
			return false, behind, err
		}
		ok, behind, err = a.Applied(ctx, peer.GTID)
		return ok, behind, err
	}
	if peer != nil && peer.Binlog != nil {
		ok, err := a.WaitPos(ctx, peer.Binlog.File, peer.Binlog.Pos, step)
		if err != nil {
			return false, "", err
		}
		if ok {
			return true, "", nil
		}
		return false, "SQL thread has not executed the peer's " + peer.Binlog.String(), nil
	}
	// Peer position unknown: everything received must be applied, judged
	// on two readings a step apart (see relayApplied).
	if prev == nil {
		var err error
		if prev, err = e.readRelay(ctx, a); err != nil {
			return false, "", err
		}
	}
	before := prev.rs
	if len(before) == 0 {
		return false, "no replication channel: what the old writer wrote cannot be known", nil
	}
	if wait := step - time.Since(prev.at); wait > 0 {
		select {
		case <-ctx.Done():
			return false, "", ctx.Err()
		case <-time.After(wait):
		}
	}
	now, err := a.Replicas(ctx)
	if err != nil {
		return false, "", err
	}
	var notes []string
	for _, r := range now {
		prev := r
		for _, b := range before {
			if b.Channel == r.Channel {
				prev = b
			}
		}
		ok, why := relayApplied(prev, r)
		if !ok {
			return false, why, nil
		}
		if why != "" {
			notes = append(notes, why)
		}
	}
	if len(notes) == 0 {
		return true, "", nil
	}
	// Met only because the applier looks idle with the relay log ending
	// in a partial transaction: no parallel worker may still be applying
	// a complete one behind the idle coordinator. Asked only here, so the
	// usual promotion does not depend on reading the workers.
	busy, err := a.BusyAppliers(ctx)
	if err != nil {
		return false, "", fmt.Errorf("reading the parallel applier workers: %w", err)
	}
	if busy > 0 {
		return false, fmt.Sprintf("%s; %d applier workers still busy", strings.Join(notes, "; "), busy), nil
	}
	e.Log.Warn("relay log ends in an incomplete transaction: applied everything complete", "detail", strings.Join(notes, "; "))
	return true, "", nil
}

// sweepReadOnlySetters kills every other session still running SET GLOBAL
// read_only / super_read_only and waits until they are gone. A superseded
// fence may have given up on such a statement client-side while the server
// still queues it; landing after writes opened, it would leave the VIP
// holder read-only. Newer fences cannot start one meanwhile: they record
// their event first, and the caller holds that lock.
func (e *Engine) sweepReadOnlySetters(ctx context.Context, a *probe.Admin) error {
	self, err := a.ConnectionID(ctx)
	if err != nil {
		return err
	}
	for {
		threads, err := a.Processlist(ctx)
		if err != nil {
			return err
		}
		found := 0
		for _, t := range threads {
			info := strings.ToUpper(strings.Join(strings.Fields(t.Info), " "))
			if t.ID == self || !(strings.HasPrefix(info, "SET GLOBAL READ_ONLY") || strings.HasPrefix(info, "SET GLOBAL SUPER_READ_ONLY")) {
				continue
			}
			found++
			e.Log.Warn("killing a stale SET read_only before opening writes", "id", t.ID, "user", t.User, "info", t.Info)
			if err := a.Kill(ctx, t.ID); err != nil {
				e.Log.Warn("kill failed", "id", t.ID, "err", err)
			}
		}
		if found == 0 || e.DryRun {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stale SET read_only sessions still running: %w", ctx.Err())
		case <-time.After(killPoll):
		}
	}
}

// releaseSemiSync switches this node's semi-sync source side off if it
// is on, and says whether the pair uses semi-sync (either side enabled
// here when the promotion began).
func (p *promotion) releaseSemiSync(a *probe.Admin) bool {
	e := p.e
	ss, err := a.SemiSync(p.ctx)
	if err != nil {
		e.Log.Warn("cannot read the semi-sync state", "err", err)
		return false
	}
	if ss.SourceEnabled && e.Cfg.SemiSync.Managed() {
		done := e.step("semi_sync.release")
		err := a.SetSemiSyncSource(p.ctx, ss, false)
		done(err)
	}
	return ss.InUse()
}

// semiSyncPromise asks the last sighting of the old writer what its
// acknowledged writes are, applies the policy, and, when reliability
// first would refuse, keeps trying to reach the old writer for
// semi_sync.fallen_back_wait: fenced after all, its final position is
// known (returned) and semi-sync no longer matters.
func (p *promotion) semiSyncPromise(pairUses bool) (state.SemiSyncCase, *probe.Position, verdict) {
	e := p.e
	var sighting *semisync.Sighting
	if b, err := e.dir().PeerSemiSync(); err != nil {
		e.Log.Warn("cannot read the last semi-sync sighting of the peer", "err", err)
	} else if b != nil {
		if sighting, err = semisync.ParseSighting(b); err != nil {
			e.Log.Warn("ignoring the last semi-sync sighting of the peer", "err", err)
		}
	}
	c, why := semisync.Promise(pairUses, sighting, time.Now())
	if c != state.SemiSyncAsync {
		e.Log.Info("semi-sync: "+why, "case", c)
	}
	wait := e.Cfg.SemiSync.FallenBackWait.Duration
	if c.Safe() || e.Cfg.Notify.Policy != config.PolicyReliability || wait <= 0 {
		return c, nil, semiSyncRule(p.ev.State, c, why, e.Cfg.Notify.Policy)
	}
	e.Log.Warn("semi-sync cannot vouch for the old writer's acknowledged writes: waiting for it to come back", "wait", wait, "why", why)
	done := e.step("semi_sync.wait_old_writer", "wait", wait)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) && p.ctx.Err() == nil {
		pos, reached, _, err := e.fencePeer(p.ctx)
		if err == nil {
			done(nil, "fenced", true)
			return state.SemiSyncFenced, pos, goOn()
		}
		if reached {
			done(err)
			return c, nil, peerRule(p.ev.State, peerFinding{Reached: true, Err: err}, nil)
		}
		select {
		case <-p.ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	done(nil, "fenced", false)
	return c, nil, semiSyncRule(p.ev.State, c, why+fmt.Sprintf("; the old writer did not come back within %s", wait), e.Cfg.Notify.Policy)
}

// writerSemiSync switches the source side on when the fenced peer
// acknowledges this node. Without it, commits would wait the whole
// timeout for nobody (rpl_semi_sync_master_wait_no_slave; a dead peer's
// connection still counts as a client for a while): the writer stays
// asynchronous and agentcheck switches it on when the peer rejoins.
func (p *promotion) writerSemiSync(a *probe.Admin, peerAcking bool) {
	e := p.e
	if !e.Cfg.SemiSync.Managed() {
		return
	}
	ss, err := a.SemiSync(p.ctx)
	if err != nil {
		e.Log.Warn("cannot read the semi-sync state", "err", err)
		return
	}
	if !ss.Source || ss.SourceEnabled {
		return
	}
	if ss.Clients == 0 || !peerAcking {
		if ss.InUse() {
			e.Log.Info("semi-sync: the peer does not acknowledge this node; asynchronous until it does", "clients", ss.Clients)
		}
		return
	}
	done := e.step("semi_sync.writer", "clients", ss.Clients)
	done(a.SetSemiSyncSource(p.ctx, ss, true))
}
