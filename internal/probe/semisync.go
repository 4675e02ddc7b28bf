package probe

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SemiSync is a server's semi-synchronous replication state, both sides:
// the source side (a writer waiting for replicas to acknowledge each
// commit) and the replica side (this server's IO thread acknowledging what
// it received). MariaDB has it built in; MySQL has it when the plugins are
// loaded, under rpl_semi_sync_source_*/replica_* names from 8.0.26 (plugins
// semisync_source/semisync_replica) and master/slave names before.
type SemiSync struct {
	// Available: the server knows semi-sync at all (built in, or a plugin
	// loaded). The other fields are zero when it does not.
	Available bool
	// Source: this server has the source side (MySQL: plugin loaded).
	Source bool
	// NewNames: the source side answers to rpl_semi_sync_source_*.
	NewNames bool
	// SourceEnabled is rpl_semi_sync_master_enabled: commits wait for an
	// acknowledgement.
	SourceEnabled bool
	// SourceOn is Rpl_semi_sync_master_status: the source side is not
	// (or no longer) fallen back to asynchronous.
	SourceOn bool
	// Clients is Rpl_semi_sync_master_clients: connected replicas that
	// acknowledge. Counted even while the source side is disabled.
	Clients int
	// WaitFor is how many acknowledgements a commit waits for
	// (rpl_semi_sync_source_wait_for_replica_count; always 1 on MariaDB).
	WaitFor int
	// WaitNoReplica is rpl_semi_sync_master_wait_no_slave: with no replica
	// connected, a commit still waits the whole timeout.
	WaitNoReplica bool
	// Timeout is how long a commit waits before the source falls back to
	// asynchronous replication.
	Timeout time.Duration
	// FallBacks counts fall-backs to asynchronous (..._no_times).
	FallBacks uint64
	// Acked and Unacked count commits acknowledged by a replica or not
	// (..._yes_tx, ..._no_tx).
	Acked, Unacked uint64
	// Waiting is the number of sessions waiting for an acknowledgement now.
	Waiting int
	// Replica: this server has the replica side (MySQL: plugin loaded).
	Replica bool
	// ReplicaEnabled is rpl_semi_sync_slave_enabled (taken into account
	// when the IO thread connects).
	ReplicaEnabled bool
	// ReplicaOn is Rpl_semi_sync_slave_status: the IO thread is connected
	// as an acknowledging replica.
	ReplicaOn bool
}

// InUse reports whether the server is set up for semi-sync: either side
// enabled. A pair whose nodes have it in their configuration is managed
// by notify without any vipguard setting.
func (s SemiSync) InUse() bool { return s.SourceEnabled || s.ReplicaEnabled }

// Active reports whether commits on this server wait for an
// acknowledgement from a connected replica right now: enabled, not fallen
// back, and at least one acknowledging replica.
func (s SemiSync) Active() bool { return s.SourceEnabled && s.SourceOn && s.Clients > 0 }

// SourceEnabledVar is the name of the variable that turns the source side
// on and off on this server.
func (s SemiSync) SourceEnabledVar() string {
	if s.NewNames {
		return "rpl_semi_sync_source_enabled"
	}
	return "rpl_semi_sync_master_enabled"
}

// Describe says the state in a few words for checks and logs.
func (s SemiSync) Describe() string {
	switch {
	case !s.Available:
		return "semi-sync not available"
	case !s.InUse():
		return "semi-sync off"
	case !s.SourceEnabled:
		return fmt.Sprintf("semi-sync replica side %s, source side off", onOff(s.ReplicaOn))
	case s.Active():
		return fmt.Sprintf("semi-sync active, %d acknowledging replica(s), %d fall-back(s)", s.Clients, s.FallBacks)
	case s.SourceOn:
		return fmt.Sprintf("semi-sync source on but no acknowledging replica connected, %d fall-back(s)", s.FallBacks)
	}
	return fmt.Sprintf("semi-sync fallen back to asynchronous (%d fall-back(s), %d commits not acknowledged)", s.FallBacks, s.Unacked)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// semiSyncName maps a variable or status name of either generation to the
// master/slave spelling, lower case, without the rpl_semi_sync_ prefix;
// ok is false for names outside semi-sync. newNames reports the
// source/replica spelling.
func semiSyncName(name string) (key string, newNames, ok bool) {
	n := strings.ToLower(name)
	rest, found := strings.CutPrefix(n, "rpl_semi_sync_")
	if !found {
		return "", false, false
	}
	side, tail, _ := strings.Cut(rest, "_")
	switch side {
	case "source":
		side, newNames = "master", true
	case "replica":
		side, newNames = "slave", true
	case "master", "slave":
	default:
		return "", false, false
	}
	tail = strings.ReplaceAll(tail, "replica", "slave")
	return side + "_" + tail, newNames, true
}

// ParseSemiSync builds the state from SHOW GLOBAL VARIABLES LIKE
// 'rpl_semi_sync%' and SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%', each as
// name/value rows. No rows at all means the server has no semi-sync. When
// a server has both name generations (old and new plugins are exclusive,
// but a proxy could merge them), the new names win.
func ParseSemiSync(vars, status [][2]string) (SemiSync, error) {
	var s SemiSync
	vals := map[string]string{}
	add := func(rows [][2]string) {
		// Old names first, so the new spelling of a fact overwrites them.
		for pass := 0; pass < 2; pass++ {
			for _, r := range rows {
				k, newNames, ok := semiSyncName(r[0])
				if !ok || newNames != (pass == 1) {
					continue
				}
				vals[k] = strings.TrimSpace(r[1])
				if strings.HasPrefix(k, "master_") && newNames {
					s.NewNames = true
				}
			}
		}
	}
	add(vars)
	add(status)
	if len(vals) == 0 {
		return s, nil
	}
	s.Available = true
	var perr error
	flag := func(k string) bool {
		v, ok := vals[k]
		if !ok {
			return false
		}
		switch strings.ToUpper(v) {
		case "ON", "1", "YES", "TRUE":
			return true
		case "OFF", "0", "NO", "FALSE", "":
			return false
		}
		if perr == nil {
			perr = fmt.Errorf("semi-sync %s: %q is not ON or OFF", k, v)
		}
		return false
	}
	num := func(k string, def uint64) uint64 {
		v, ok := vals[k]
		if !ok || v == "" {
			return def
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil && perr == nil {
			perr = fmt.Errorf("semi-sync %s: %q is not a number", k, v)
		}
		return n
	}
	_, s.Source = vals["master_enabled"]
	_, s.Replica = vals["slave_enabled"]
	s.SourceEnabled = flag("master_enabled")
	s.SourceOn = flag("master_status")
	s.Clients = int(min(num("master_clients", 0), 1<<20))
	s.WaitFor = int(min(num("master_wait_for_slave_count", 1), 1<<20))
	s.WaitNoReplica = flag("master_wait_no_slave")
	s.Timeout = time.Duration(min(num("master_timeout", 10000), 1<<40)) * time.Millisecond
	s.FallBacks = num("master_no_times", 0)
	s.Acked = num("master_yes_tx", 0)
	s.Unacked = num("master_no_tx", 0)
	s.Waiting = int(min(num("master_wait_sessions", 0), 1<<20))
	s.ReplicaEnabled = flag("slave_enabled")
	s.ReplicaOn = flag("slave_status")
	if perr != nil {
		return SemiSync{}, perr
	}
	return s, nil
}

// SemiSync reads the semi-sync state: two SHOW statements, each under the
// query deadline; a server without semi-sync answers with no rows.
func (p *Prober) SemiSync(ctx context.Context) (SemiSync, error) {
	return readSemiSync(ctx, p.Q, p.QueryTimeout)
}

// SemiSync reads the semi-sync state on the admin connection.
func (a *Admin) SemiSync(ctx context.Context) (SemiSync, error) {
	return readSemiSync(ctx, a.Q, a.QueryTimeout)
}

func readSemiSync(ctx context.Context, q Querier, timeout time.Duration) (SemiSync, error) {
	p := &Prober{Q: q, QueryTimeout: timeout}
	var rows [2][][2]string
	for i, stmt := range []string{"SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'", "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'"} {
		cols, rs, err := p.queryStrings(ctx, stmt)
		if err != nil {
			return SemiSync{}, fmt.Errorf("reading semi-sync state: %w", err)
		}
		if len(cols) != 2 {
			return SemiSync{}, fmt.Errorf("reading semi-sync state: %d columns from %q", len(cols), stmt)
		}
		for _, r := range rs {
			if r[0] != nil && r[1] != nil {
				rows[i] = append(rows[i], [2]string{*r[0], *r[1]})
			}
		}
	}
	return ParseSemiSync(rows[0], rows[1])
}

// SetSemiSyncSource turns the source side on or off. Off also releases at
// once every session waiting for an acknowledgement (the server switches
// to asynchronous and wakes them), which is how a standby's applier is
// freed from waiting for a dead peer.
func (a *Admin) SetSemiSyncSource(ctx context.Context, s SemiSync, on bool) error {
	if !s.Source {
		return fmt.Errorf("semi-sync source side not available on this server")
	}
	v := "OFF"
	if on {
		v = "ON"
	}
	return a.change(ctx, 0, "SET GLOBAL "+s.SourceEnabledVar()+" = "+v)
}

// SetSemiSyncSourceByRole turns the source side on only while the server
// is writable, or off only while it is read-only: the server checks
// read_only in the same statement, so a promotion or fence that changes
// it meanwhile is never undone by a decision taken just before.
func (a *Admin) SetSemiSyncSourceByRole(ctx context.Context, s SemiSync, on bool) error {
	if !s.Source {
		return fmt.Errorf("semi-sync source side not available on this server")
	}
	name := s.SourceEnabledVar()
	cond := "@@global.read_only = 1"
	val := "0"
	if on {
		cond, val = "@@global.read_only = 0", "1"
	}
	return a.change(ctx, 0, "SET GLOBAL "+name+" = IF("+cond+", "+val+", @@global."+name+")")
}
