package agent

// The node's state on /metrics, for alert rules: which pair and node this
// is, the server's role, each replication channel, the maintenance flag and
// notify's last transition. Every label value comes from the configuration,
// the server's own channel names or a fixed set, never from a client, and
// notify's free-text reason is left out: a series per distinct reason would
// grow without bound.

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vipguard/vipguard/internal/cli"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
)

// hostname names the node on vipguard_node_info; read once, as a restart
// is what changes it.
var hostname, _ = os.Hostname()

// nodeLabels is what vipguard_node_info says beyond the build.
type nodeLabels struct{ pair string }

// SetConfig takes the labels /metrics reads from the configuration
// ([agent] pair); call it with every configuration put in force.
func (m *Metrics) SetConfig(c *config.Config) {
	m.node.Store(&nodeLabels{pair: c.Agent.Pair})
}

// Known values of notify's outcome fields; anything else is "other", so
// that a corrupt or future file cannot add series.
var (
	knownEvents = []string{"MASTER", "BACKUP", "FAULT", "STOP", "DELETED"}
	knownPhases = []state.Phase{state.PhaseRunning, state.PhaseDone, state.PhaseFailed}
	knownRoles  = []state.Role{state.RoleWriter, state.RoleStandby}
)

func known[T ~string](v T, set []T) string {
	if v == "" {
		return ""
	}
	for _, k := range set {
		if v == k {
			return string(v)
		}
	}
	return "other"
}

// writeState renders the node's state series. ok says the last poll
// succeeded and is fresh: series read from the server are left out
// otherwise, rather than shown stale.
func (m *Metrics) writeState(b *bytes.Buffer, in Input, pol Policy, ok bool) {
	help := func(name, typ, text string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, typ)
	}
	pair := ""
	if n := m.node.Load(); n != nil {
		pair = n.pair
	}
	help("vipguard_node_info", "gauge", "Always 1; pair is [agent] pair (the same on both nodes), node the host name. Join on it by instance.")
	b.WriteString("vipguard_node_info{pair=")
	writeLabelValue(b, pair)
	b.WriteString(",node=")
	writeLabelValue(b, hostname)
	b.WriteString(",version=")
	writeLabelValue(b, cli.VersionString())
	b.WriteString("} 1\n")

	if at := m.lastOK.Load(); at != 0 {
		help("vipguard_agent_last_successful_poll_timestamp_seconds", "gauge", "When the last successful MySQL poll ended, since the Unix epoch.")
		fmt.Fprintf(b, "vipguard_agent_last_successful_poll_timestamp_seconds %s\n", unixSeconds(time.Unix(0, at)))
	}

	help("vipguard_role", "gauge", "1 for the role the server is in: writer (read_only OFF) or standby (read_only ON); both 0 while it cannot be read.")
	writable, standby := false, false
	if ok {
		writable = in.Poll.Snapshot.Writable()
		standby = !writable
	}
	fmt.Fprintf(b, "vipguard_role{role=\"writer\"} %d\nvipguard_role{role=\"standby\"} %d\n", b2i(writable), b2i(standby))

	help("vipguard_check_max_lag_seconds", "gauge", "[check] max_lag: a standby lagging more is unfit (0: no limit).")
	fmt.Fprintf(b, "vipguard_check_max_lag_seconds %s\n", ftoa(pol.Check.MaxLag.Seconds()))
	help("vipguard_check_warn_lag_seconds", "gauge", "[check] warn_lag: a standby lagging more is a warning (0: none).")
	fmt.Fprintf(b, "vipguard_check_warn_lag_seconds %s\n", ftoa(pol.Check.WarnLag.Seconds()))

	if ok {
		writeReplication(b, help, in.Poll.Snapshot)
		writeSemiSync(b, help, in.Poll.Snapshot.SemiSync)
	}
	m.writeKeeper(b, help)

	if m := in.Maintenance; m.On && !m.Since.IsZero() {
		help("vipguard_maintenance_since_timestamp_seconds", "gauge", "When the maintenance flag was set, since the Unix epoch (absent while it is off or says no time).")
		fmt.Fprintf(b, "vipguard_maintenance_since_timestamp_seconds %s\n", unixSeconds(m.Since))
	}

	help("vipguard_notify_promotions_total", "counter", "Completed promotions (MASTER, done, role writer) notify recorded on this node since agentcheck started.")
	fmt.Fprintf(b, "vipguard_notify_promotions_total %d\n", m.promos.n.Load())

	o := in.Outcome
	if o == nil {
		return // notify never ran here
	}
	help("vipguard_notify_last_transition_info", "gauge", "Always 1; the keepalived event, phase (running, done, failed) and role of notify's last outcome on this node.")
	b.WriteString("vipguard_notify_last_transition_info{event=")
	writeLabelValue(b, known(o.Event, knownEvents))
	b.WriteString(",phase=")
	writeLabelValue(b, known(o.Phase, knownPhases))
	b.WriteString(",role=")
	writeLabelValue(b, known(o.Role, knownRoles))
	b.WriteString("} 1\n")
	if !o.At.IsZero() {
		help("vipguard_notify_last_transition_timestamp_seconds", "gauge", "When notify last recorded an outcome on this node, since the Unix epoch.")
		fmt.Fprintf(b, "vipguard_notify_last_transition_timestamp_seconds %s\n", unixSeconds(o.At))
	}
	help("vipguard_notify_last_transition_unfit", "gauge", "1 when notify's last outcome marked this node unfit (or cannot be read).")
	fmt.Fprintf(b, "vipguard_notify_last_transition_unfit %d\n", b2i(o.Unfit))
	if o.SemiSync != "" {
		help("vipguard_notify_last_promotion_semi_sync", "gauge", "Always 1; what semi-sync could promise at the last promotion here: async (not used), fenced (old writer fenced, its position known), kept (every acknowledged write was here), fallen-back or unknown (acknowledged writes may be missing).")
		b.WriteString("vipguard_notify_last_promotion_semi_sync{case=")
		writeLabelValue(b, known(o.SemiSync, knownSemiSyncCases))
		b.WriteString("} 1\n")
	}
}

// promotionCount counts the promotions notify completes on this node, for
// a rate of VIP moves: the last-transition series show only the newest
// outcome, and a pair that flaps faster than it is scraped would hide its
// moves between two scrapes. Each outcome file notify writes is looked at
// (see Poller.observeOutcome); a promotion's "done" record stays until the
// node's next keepalived event, so none is missed.
type promotionCount struct {
	mu   sync.Mutex
	seen bool      // the baseline is taken
	last time.Time // when the last promotion counted was recorded
	n    atomic.Uint64
}

// observeOutcome counts o when it is a completed promotion not counted
// yet. The first outcome observed is the baseline, never counted: a
// promotion recorded before agentcheck started is not one more move at
// every restart.
func (m *Metrics) observeOutcome(o *state.Outcome) {
	c := &m.promos
	c.mu.Lock()
	defer c.mu.Unlock()
	promo := o != nil && o.Event == "MASTER" && o.Phase == state.PhaseDone && o.Role == state.RoleWriter
	switch {
	case !c.seen:
		c.seen = true
		if promo {
			c.last = o.At
		}
	case promo && !o.At.Equal(c.last):
		c.last = o.At
		c.n.Add(1)
	}
}

var knownSemiSyncCases = []state.SemiSyncCase{state.SemiSyncAsync, state.SemiSyncFenced, state.SemiSyncKept, state.SemiSyncFallenBack, state.SemiSyncUnknown}

// writeSemiSync renders the server's semi-sync state, when it has any.
func writeSemiSync(b *bytes.Buffer, help func(name, typ, text string), ss *probe.SemiSync) {
	if ss == nil || !ss.Available {
		return
	}
	gauge := func(name, text string, v int) {
		help(name, "gauge", text)
		fmt.Fprintf(b, "%s %d\n", name, v)
	}
	gauge("vipguard_semi_sync_in_use", "1 when either side of semi-sync is enabled on the server.", b2i(ss.InUse()))
	gauge("vipguard_semi_sync_source_enabled", "1 when commits on this server wait for an acknowledgement (the source side is on).", b2i(ss.SourceEnabled))
	gauge("vipguard_semi_sync_source_active", "1 when the source side is on, not fallen back, and an acknowledging replica is connected.", b2i(ss.Active()))
	gauge("vipguard_semi_sync_clients", "Acknowledging replicas connected.", ss.Clients)
	gauge("vipguard_semi_sync_replica_on", "1 when this server's IO thread is connected as an acknowledging replica.", b2i(ss.ReplicaOn))
	help("vipguard_semi_sync_fall_backs_total", "counter", "Fall-backs of the source side to asynchronous replication since the server started.")
	fmt.Fprintf(b, "vipguard_semi_sync_fall_backs_total %d\n", ss.FallBacks)
	help("vipguard_semi_sync_commits_total", "counter", "Commits by whether a replica acknowledged them, since the server started.")
	fmt.Fprintf(b, "vipguard_semi_sync_commits_total{acknowledged=\"yes\"} %d\nvipguard_semi_sync_commits_total{acknowledged=\"no\"} %d\n", ss.Acked, ss.Unacked)
}

// writeKeeper renders what the semi-sync keeper did.
func (m *Metrics) writeKeeper(b *bytes.Buffer, help func(name, typ, text string)) {
	k := &m.keeper
	help("vipguard_semi_sync_role_changes_total", "counter", "Source-side switches agentcheck made to match the node's role, and failures.")
	fmt.Fprintf(b, "vipguard_semi_sync_role_changes_total{action=\"enable\"} %d\n", k.changes[0].Load())
	fmt.Fprintf(b, "vipguard_semi_sync_role_changes_total{action=\"disable\"} %d\n", k.changes[1].Load())
	fmt.Fprintf(b, "vipguard_semi_sync_role_changes_total{action=\"failed\"} %d\n", k.failures.Load())
	help("vipguard_semi_sync_peer_sightings_total", "counter", "Reads of the peer's semi-sync state while this node is a standby, by result.")
	fmt.Fprintf(b, "vipguard_semi_sync_peer_sightings_total{result=\"ok\"} %d\n", k.sightings[0].Load())
	fmt.Fprintf(b, "vipguard_semi_sync_peer_sightings_total{result=\"error\"} %d\n", k.sightings[1].Load())
	if at := k.lastSight.Load(); at != 0 {
		help("vipguard_semi_sync_peer_sighting_timestamp_seconds", "gauge", "When the peer's semi-sync state was last recorded, since the Unix epoch.")
		fmt.Fprintf(b, "vipguard_semi_sync_peer_sighting_timestamp_seconds %s\n", unixSeconds(time.Unix(0, at)))
	}
}

// writeReplication renders one set of series per replication channel.
func writeReplication(b *bytes.Buffer, help func(name, typ, text string), s *probe.Snapshot) {
	help("vipguard_replication_channels", "gauge", "Replication channels configured on the server.")
	fmt.Fprintf(b, "vipguard_replication_channels %d\n", len(s.Replicas))
	if len(s.Replicas) == 0 {
		return
	}
	each := func(name, typ, text string, value func(r probe.Replica) (string, bool)) {
		help(name, typ, text)
		for _, r := range s.Replicas {
			if v, ok := value(r); ok {
				b.WriteString(name)
				b.WriteString("{channel=")
				writeLabelValue(b, r.Channel)
				b.WriteString("} ")
				b.WriteString(v)
				b.WriteByte('\n')
			}
		}
	}
	flag := func(f func(r probe.Replica) bool) func(probe.Replica) (string, bool) {
		return func(r probe.Replica) (string, bool) { return strconv.Itoa(b2i(f(r))), true }
	}
	each("vipguard_replication_io_running", "gauge", "1 when the channel's IO (receiver) thread runs and is connected.",
		flag(func(r probe.Replica) bool { return r.IORunning == probe.IOYes }))
	each("vipguard_replication_sql_running", "gauge", "1 when the channel's SQL (applier) thread runs.",
		flag(func(r probe.Replica) bool { return r.SQLRunning }))
	each("vipguard_replication_broken", "gauge", "1 when the channel needs a human: a thread stopped, or failed on an error retrying will not mend.",
		flag(func(r probe.Replica) bool { return r.Health().Broken() }))
	each("vipguard_replication_lag_seconds", "gauge", "Replication lag: the heartbeat table's when configured, else Seconds_Behind_Master; absent when unknown.",
		func(r probe.Replica) (string, bool) {
			switch {
			case s.HeartbeatLag != nil:
				return ftoa(s.HeartbeatLag.Seconds()), true
			case r.SecondsBehind != nil:
				return strconv.FormatInt(*r.SecondsBehind, 10), true
			}
			return "", false
		})
	help("vipguard_replication_last_errno", "gauge", "The channel's last error number, by thread (0: none).")
	for _, r := range s.Replicas {
		for _, t := range []struct {
			thread string
			errno  int
		}{{"io", r.IOErrno}, {"sql", r.SQLErrno}} {
			b.WriteString("vipguard_replication_last_errno{channel=")
			writeLabelValue(b, r.Channel)
			fmt.Fprintf(b, ",thread=%q} %d\n", t.thread, t.errno)
		}
	}
}

// writeLabelValue writes v quoted and escaped as the text exposition
// format wants (backslash, double quote and line feed only: Go's %q would
// write escapes Prometheus does not read).
func writeLabelValue(b *bytes.Buffer, v string) {
	b.WriteByte('"')
	b.WriteString(labelEscaper.Replace(v))
	b.WriteByte('"')
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func unixSeconds(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1e3, 'f', 3, 64)
}
