package agent

// The semi-sync keeper: after each poll, it keeps the local source side in
// line with the node's role (package semisync decides), and while this
// node is a standby it records what the peer's source side looks like, so
// that a promotion after the peer's death knows whether semi-sync vouches
// for the relay log. It runs beside the poller, never in its way: a frozen
// peer costs this goroutine its deadline, not the checks.

import (
	"context"
	"database/sql"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/semisync"
	"github.com/vipguard/vipguard/internal/state"
)

// semiSyncKeeper is the keeper's state between polls.
type semiSyncKeeper struct {
	config  func() *config.Config
	files   func() *Files
	log     *slog.Logger
	metrics *Metrics
	kick    chan struct{}

	peer       *sql.DB // open while a peer is configured
	peerTarget string
	lastPeer   string // last peer error, for logging transitions only
	// peerWaits: the peer's source side was on when last read. A standby
	// keeps recording it then even with its own semi-sync off: the
	// promotion must see the writer committing without its acknowledgement.
	peerWaits bool
}

// keeperMetrics counts the keeper's work for /metrics.
type keeperMetrics struct {
	changes   [2]atomic.Uint64 // enable, disable
	failures  atomic.Uint64
	sightings [2]atomic.Uint64 // ok, error
	lastSight atomic.Int64     // unix ns of the last sighting written
}

func newSemiSyncKeeper(cfg func() *config.Config, files func() *Files, log *slog.Logger, m *Metrics) *semiSyncKeeper {
	return &semiSyncKeeper{config: cfg, files: files, log: log, metrics: m, kick: make(chan struct{}, 1)}
}

// polled tells the keeper a poll ended; it never blocks the poller.
func (k *semiSyncKeeper) polled() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// run handles each poll result until ctx ends.
func (k *semiSyncKeeper) run(ctx context.Context, current func() *State) {
	defer func() {
		if k.peer != nil {
			k.peer.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.kick:
		}
		if st := current(); st != nil && st.Err == nil && st.Snapshot != nil {
			k.once(ctx, st.Snapshot)
		}
	}
}

// once acts on one fresh snapshot.
func (k *semiSyncKeeper) once(ctx context.Context, snap *probe.Snapshot) {
	ss := snap.SemiSync
	if ss == nil || !ss.Available {
		return
	}
	cfg := k.config()
	o, oerr := k.files().Outcome()
	in := semisync.RoleInput{Managed: cfg.SemiSync.Managed(), Local: *ss, Writable: snap.Writable()}
	if oerr == nil && o != nil {
		in.Writer = o.Promoted()
		in.Standby = o.Role == state.RoleStandby && o.Phase != state.PhaseRunning
	}
	// The peer is read when it decides something: whether it acknowledges
	// a writer that could start waiting for it, or, on a standby, what the
	// writer's semi-sync looks like for a promotion to come.
	mayEnable := in.Managed && in.Writable && in.Writer && !ss.SourceEnabled && ss.Clients > 0
	standby := !snap.Writable() && (ss.InUse() || k.peerWaits)
	if cfg.Peer.Host != "" && (mayEnable || standby) {
		if pv, err := k.readPeer(ctx, cfg); err != nil {
			k.peerFailed(err)
		} else {
			k.peerSeen()
			k.peerWaits = pv.semiSync.SourceEnabled
			in.PeerAcking = semisync.SelfAcking(pv.semiSync, channelFrom(pv.replicas, snap.ServerID))
			if standby {
				s := semisync.NewSighting(pv.at, pv.id, pv.writable, pv.semiSync,
					semisync.SelfAcking(*ss, channelFrom(snap.Replicas, pv.id)))
				k.record(cfg, s)
			}
		}
	}
	if act := semisync.Role(in); act != semisync.Keep {
		k.apply(ctx, cfg, act, *ss)
	}
}

// apply switches the local source side, on the condition the rule was
// decided on (read_only), checked by the server in the same statement.
func (k *semiSyncKeeper) apply(ctx context.Context, cfg *config.Config, act semisync.Action, ss probe.SemiSync) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout(cfg))
	defer cancel()
	err := withAdmin(ctx, probe.LocalTarget(cfg), func(a *probe.Admin) error {
		return a.SetSemiSyncSourceByRole(ctx, ss, act == semisync.EnableSource)
	})
	if err != nil {
		k.metrics.keeper.failures.Add(1)
		k.log.Warn("cannot switch the semi-sync source side", "action", act.String(), "err", err)
		return
	}
	i := 0
	if act == semisync.DisableSource {
		i = 1
	}
	k.metrics.keeper.changes[i].Add(1)
	switch act {
	case semisync.EnableSource:
		k.log.Info("semi-sync: the peer acknowledges this writer again; commits wait for it", "clients", ss.Clients)
	default:
		k.log.Info("semi-sync: source side off on this standby (it must never wait for acknowledgements)")
	}
}

// peerView is what the keeper reads of the peer.
type peerView struct {
	at       time.Time
	id       uint32
	writable bool
	semiSync probe.SemiSync
	replicas []probe.Replica
}

// readPeer reads the peer's role, semi-sync state and channels on the
// keeper's own small pool, within one poll deadline.
func (k *semiSyncKeeper) readPeer(ctx context.Context, cfg *config.Config) (*peerView, error) {
	ctx, cancel := context.WithTimeout(ctx, pollTimeout(cfg))
	defer cancel()
	t := probe.PeerTarget(cfg)
	if k.peer == nil || k.peerTarget != t.String() {
		if k.peer != nil {
			k.peer.Close()
		}
		db, err := probe.Open(t)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1)
		k.peer, k.peerTarget = db, t.String()
	}
	conn, err := k.peer.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	pr := &probe.Prober{Q: conn, QueryTimeout: t.QueryTimeout}
	v, id, err := pr.Version(ctx)
	if err != nil {
		return nil, err
	}
	a := &probe.Admin{Q: conn, V: v, QueryTimeout: t.QueryTimeout}
	ro, sro, err := a.ReadOnly(ctx)
	if err != nil {
		return nil, err
	}
	pv := &peerView{id: id, writable: !ro && !sro}
	if pv.semiSync, err = a.SemiSync(ctx); err != nil {
		return nil, err
	}
	if pv.replicas, err = pr.Replicas(ctx, v); err != nil {
		return nil, err
	}
	pv.at = time.Now()
	return pv, nil
}

// record saves a sighting for notify.
func (k *semiSyncKeeper) record(cfg *config.Config, s semisync.Sighting) {
	b, err := s.Marshal()
	if err == nil {
		err = state.Dir(cfg.StateDir).WritePeerSemiSync(b)
	}
	if err != nil {
		k.log.Warn("cannot record the peer's semi-sync state", "err", err)
		return
	}
	k.metrics.keeper.lastSight.Store(s.At.UnixNano())
}

func (k *semiSyncKeeper) peerSeen() {
	k.metrics.keeper.sightings[0].Add(1)
	if k.lastPeer != "" {
		k.log.Info("the peer's semi-sync state is read again")
		k.lastPeer = ""
	}
}

func (k *semiSyncKeeper) peerFailed(err error) {
	k.metrics.keeper.sightings[1].Add(1)
	if msg := err.Error(); msg != k.lastPeer {
		k.log.Warn("cannot read the peer's semi-sync state; the last sighting stays", "err", err)
		k.lastPeer = msg
	}
}

// channelFrom is the channel replicating from the server with id, or the
// only channel.
func channelFrom(reps []probe.Replica, id uint32) *probe.Replica {
	for i := range reps {
		if reps[i].SourceServerID == id {
			return &reps[i]
		}
	}
	if len(reps) == 1 {
		return &reps[0]
	}
	return nil
}

// withAdmin runs f on a fresh connection to t.
func withAdmin(ctx context.Context, t probe.Target, f func(a *probe.Admin) error) error {
	db, err := probe.Open(t)
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	v, _, err := (&probe.Prober{Q: conn, QueryTimeout: t.QueryTimeout}).Version(ctx)
	if err != nil {
		return err
	}
	return f(&probe.Admin{Q: conn, V: v, QueryTimeout: t.QueryTimeout})
}
