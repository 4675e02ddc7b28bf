package doctor

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
)

// Limits of the clock check: heartbeat lag and every timestamp vipguard
// logs compare the nodes' clocks.
const (
	clockWarn = time.Second
	clockFail = 30 * time.Second
)

// CheckServers checks each server that was read, then the pair. peer is
// nil when no peer is configured.
func CheckServers(local, peer *Server, heartbeat string) []Result {
	var rs []Result
	for _, s := range []*Server{local, peer} {
		if s == nil {
			continue
		}
		other := peer
		if s == peer {
			other = local
		}
		rs = append(rs, checkServer(s, other, heartbeat)...)
	}
	if local != nil && peer != nil && local.Err == nil && peer.Err == nil {
		rs = append(rs, checkPair(local, peer)...)
	}
	return rs
}

func checkServer(s, other *Server, heartbeat string) []Result {
	n := s.Node
	key := "[mysql]"
	if n == "peer" {
		key = "[peer]"
	}
	if s.Err != nil {
		return []Result{bad(Fail, n, "connect", "check "+key+" host, port, user and password (or defaults_file), and that the account exists for this host",
			"cannot read %s: %v", s.Target, s.Err)}
	}
	rs := []Result{ok(n, "connect", "%s, %s", s.Target, s.Version)}
	v := s.Vars
	if truthy(v["log_bin"]) {
		rs = append(rs, ok(n, "log_bin", "binary log ON"))
	} else {
		rs = append(rs, bad(Fail, n, "log_bin", "set log_bin in my.cnf and restart: the peer replicates from this binary log", "binary log OFF"))
	}
	lsu, name := v["log_slave_updates"], "log_slave_updates"
	if lsu == "" {
		lsu, name = v["log_replica_updates"], "log_replica_updates"
	}
	if truthy(lsu) {
		rs = append(rs, ok(n, "log_slave_updates", "%s ON", name))
	} else {
		rs = append(rs, bad(Fail, n, "log_slave_updates", "set "+name+" in my.cnf and restart: a promoted node must log what it applied, or its GTID state diverges",
			"%s OFF", name))
	}
	if f := strings.ToUpper(v["binlog_format"]); f == "ROW" {
		rs = append(rs, ok(n, "binlog_format", "ROW"))
	} else {
		rs = append(rs, bad(Fail, n, "binlog_format", "set binlog_format=ROW in my.cnf (and SET GLOBAL binlog_format=ROW)",
			"binlog_format=%s: statements can apply differently on the peer", orDash(f)))
	}
	rs = append(rs, checkReadOnlyAtStart(s))
	if v["sync_binlog"] == "1" {
		rs = append(rs, ok(n, "sync_binlog", "1"))
	} else {
		rs = append(rs, bad(Warn, n, "sync_binlog", "set sync_binlog=1 in my.cnf (and SET GLOBAL sync_binlog=1)",
			"sync_binlog=%s: a crash can lose transactions the clients saw committed from the binary log the peer reads", orDash(v["sync_binlog"])))
	}
	if v["innodb_flush_log_at_trx_commit"] == "1" {
		rs = append(rs, ok(n, "innodb_flush_log_at_trx_commit", "1"))
	} else {
		rs = append(rs, bad(Warn, n, "innodb_flush_log_at_trx_commit", "set innodb_flush_log_at_trx_commit=1 in my.cnf (and SET GLOBAL)",
			"innodb_flush_log_at_trx_commit=%s: a crash can lose acknowledged commits", orDash(v["innodb_flush_log_at_trx_commit"])))
	}
	if s.Version.Flavor == probe.MySQL {
		if strings.EqualFold(v["gtid_mode"], "ON") && strings.EqualFold(v["enforce_gtid_consistency"], "ON") {
			rs = append(rs, ok(n, "gtid_mode", "gtid_mode=ON, enforce_gtid_consistency=ON"))
		} else {
			rs = append(rs, bad(Fail, n, "gtid_mode", "set gtid_mode=ON and enforce_gtid_consistency=ON in my.cnf",
				"gtid_mode=%s, enforce_gtid_consistency=%s", orDash(v["gtid_mode"]), orDash(v["enforce_gtid_consistency"])))
		}
	}
	rs = append(rs, checkReplication(s, other))
	rs = append(rs, checkGrants(s, heartbeat))
	return rs
}

// checkReadOnlyAtStart: keepalived adds the VIP before notify runs, so a
// node that starts writable takes writes nobody gated.
func checkReadOnlyAtStart(s *Server) Result {
	const check = "read_only_at_start"
	fix := "put read_only=ON in the [mysqld] section of my.cnf (every node must start read-only; notify opens writes)"
	if s.StartOptions != nil {
		on, found := optionValue(s.StartOptions, "read_only")
		switch {
		case found && on:
			return ok(s.Node, check, "read_only=ON in mysqld's options")
		case found:
			return bad(Fail, s.Node, check, fix, "mysqld's options turn read_only off at start")
		}
		return bad(Fail, s.Node, check, fix, "no read_only in mysqld's options: it starts writable")
	}
	ro := truthy(s.Vars["read_only"])
	switch s.ReadOnlyOrigin {
	case "CONFIG", "COMMAND-LINE", "COMMAND_LINE", "EXPLICIT", "PERSISTED", "AUTO":
		if ro {
			return ok(s.Node, check, "read_only=ON (from %s)", strings.ToLower(s.ReadOnlyOrigin))
		}
		return bad(Fail, s.Node, check, fix, "read_only=OFF from %s: it starts writable", strings.ToLower(s.ReadOnlyOrigin))
	case "COMPILE-TIME", "COMPILED":
		return bad(Fail, s.Node, check, fix, "read_only is at its built-in default (OFF) at start: it starts writable")
	}
	why := "read_only was set since the server started"
	if s.ReadOnlyOrigin == "" {
		why = "the server does not say where read_only came from"
	}
	return bad(Skip, s.Node, check, "run vipguard doctor on that node, which reads mysqld's options",
		"%s, and its options are %s", why, orDash(s.StartOptionsNote))
}

// checkReplication: the node must replicate from the other one, by GTID,
// both threads running.
func checkReplication(s, other *Server) Result {
	const check = "replication"
	n := s.Node
	if s.ReplicasErr != nil {
		return bad(Fail, n, check, "grant the account what Required grants lists", "cannot read the replication state: %v", s.ReplicasErr)
	}
	var from *probe.Replica
	for i, r := range s.Replicas {
		if other == nil || other.Err != nil || strconv.FormatUint(uint64(r.SourceServerID), 10) == other.Vars["server_id"] {
			from = &s.Replicas[i]
			break
		}
	}
	if from == nil && len(s.Replicas) == 1 {
		// The one channel (its Master_Server_Id is 0 before it ever
		// connected, or is the other's old id: server_id has its own check).
		from = &s.Replicas[0]
	}
	if from == nil {
		return bad(Fail, n, check, "CHANGE MASTER TO the peer with GTID (MASTER_USE_GTID=slave_pos / SOURCE_AUTO_POSITION=1) and START SLAVE",
			"does not replicate from the other node (%d channel(s))", len(s.Replicas))
	}
	desc := fmt.Sprintf("from %s:%d, IO %s, SQL %s", from.SourceHost, from.SourcePort, from.IORunning, yesNo(from.SQLRunning))
	if s.Version.Flavor == probe.MariaDB && strings.EqualFold(from.UsingGTID, "No") {
		return bad(Fail, n, check, "CHANGE MASTER TO MASTER_USE_GTID=slave_pos: a promotion compares GTID positions",
			"%s, not using GTID", desc)
	}
	switch h := from.Health(); {
	case h == probe.Streaming:
		return ok(n, check, "%s", desc)
	case h == probe.Starting || h == probe.SourceUnreachable:
		return bad(Warn, n, check, "see that the other node runs and this one reaches it (SHOW SLAVE STATUS)", "%s: %s", desc, h)
	default:
		return bad(Fail, n, check, "mend and START SLAVE (SHOW SLAVE STATUS says why it stopped)", "%s: %s", desc, from.Problem())
	}
}

// checkGrants: the account must hold what RequiredGrants lists for the
// server's version, and should hold nothing more — an account that can
// write, drop or grant turns a stolen option file into a stolen database.
func checkGrants(s *Server, heartbeat string) Result {
	const check = "grants"
	if s.GrantsErr != nil {
		return bad(Fail, s.Node, check, "", "cannot read SHOW GRANTS: %v", s.GrantsErr)
	}
	req := RequiredGrants(s.Version, heartbeat)
	held := ParseGrants(s.Grants)
	if missing := held.Missing(req); !missing.empty() {
		return bad(Fail, s.Node, check, strings.Join(missing.grantStatements(s.User), "; ")+" (README, Required grants, "+s.Version.String()+")",
			"%s lacks %s", s.User, missing)
	}
	if u, _, _ := cutLast(s.User, "@"); u == "root" {
		// With no account configured the tools log in as root (over the
		// socket, by unix_socket): revoking root's privileges is no fix.
		return ok(s.Node, check, "%s holds what %s needs (the administrator account, used when none is configured)", s.User, s.Version)
	}
	if x := held.Excess(s.User, req, s.Privileges); len(x.Fix) > 0 {
		return bad(Warn, s.Node, check, strings.Join(x.Fix, "; "),
			"%s holds more than %s needs: %s", s.User, s.Version, strings.Join(x.Held, "; "))
	}
	return ok(s.Node, check, "%s holds what %s needs, and no more", s.User, s.Version)
}

func checkPair(a, b *Server) []Result {
	var rs []Result
	id := func(s *Server) string { return s.Vars["server_id"] }
	if id(a) == id(b) {
		rs = append(rs, bad(Fail, "pair", "server_id", "give each node its own server_id in my.cnf",
			"both nodes have server_id %s: each ignores the other's events", id(a)))
	} else {
		rs = append(rs, ok("pair", "server_id", "%s and %s", id(a), id(b)))
	}
	if a.Version.Flavor == probe.MariaDB && b.Version.Flavor == probe.MariaDB {
		d := func(s *Server) string { return s.Vars["gtid_domain_id"] }
		if d(a) == d(b) {
			rs = append(rs, bad(Fail, "pair", "gtid_domain_id", "give each node its own gtid_domain_id in my.cnf",
				"both nodes have gtid_domain_id %s: writes on both sides would share one GTID stream", d(a)))
		} else {
			rs = append(rs, ok("pair", "gtid_domain_id", "%s and %s", d(a), d(b)))
		}
	}
	rs = append(rs, checkAutoIncrement(a.Vars, b.Vars))
	rs = append(rs, checkSemiSync(a, b))
	rs = append(rs, checkClock(a, b))
	return rs
}

// checkAutoIncrement: if both nodes ever take writes (a split brain, a
// late write on the old writer), their generated keys must not collide.
func checkAutoIncrement(a, b map[string]string) Result {
	const check = "auto_increment"
	fix := "auto_increment_increment=2 on both nodes, auto_increment_offset=1 on one and 2 on the other (my.cnf)"
	ia, _ := strconv.Atoi(a["auto_increment_increment"])
	ib, _ := strconv.Atoi(b["auto_increment_increment"])
	oa, _ := strconv.Atoi(a["auto_increment_offset"])
	ob, _ := strconv.Atoi(b["auto_increment_offset"])
	switch {
	case ia != ib:
		return bad(Fail, "pair", check, fix, "auto_increment_increment differs: %d and %d", ia, ib)
	case ia < 2:
		return bad(Fail, "pair", check, fix, "auto_increment_increment=%d: both nodes generate the same keys", ia)
	case ia > 0 && oa%ia == ob%ia:
		return bad(Fail, "pair", check, fix, "auto_increment_offset %d and %d with increment %d generate the same keys", oa, ob, ia)
	}
	return ok("pair", check, "increment %d, offsets %d and %d", ia, oa, ob)
}

// checkSemiSync: the replica side (acknowledging the other node) is the
// DBA's choice and must be the same on both nodes; the source side
// (waiting for acknowledgements) follows the role — vipguard switches it —
// and a standby that waits stalls its applier when the writer dies.
func checkSemiSync(a, b *Server) Result {
	const check = "semi_sync"
	source := func(s *Server) bool {
		return truthy(s.Vars["rpl_semi_sync_master_enabled"] + s.Vars["rpl_semi_sync_source_enabled"])
	}
	replica := func(s *Server) bool {
		return truthy(s.Vars["rpl_semi_sync_slave_enabled"] + s.Vars["rpl_semi_sync_replica_enabled"])
	}
	if replica(a) != replica(b) {
		return bad(Warn, "pair", check, "set rpl_semi_sync_slave_enabled (or _replica_) the same on both nodes in my.cnf: after a switchover the durability promise must not change",
			"replica side: local %s, peer %s", onOff(replica(a)), onOff(replica(b)))
	}
	for _, s := range []*Server{a, b} {
		other := a
		if s == a {
			other = b
		}
		switch {
		case source(s) && truthy(s.Vars["read_only"]):
			return bad(Warn, s.Node, check, "vipguard switches the source side off on a standby: is agentcheck running here, or is [semi_sync] manage = false?",
				"read-only but the semi-sync source side is on: when the writer dies, this node's applier waits for its acknowledgement up to rpl_semi_sync_master_timeout")
		case source(s) && !replica(other):
			return bad(Warn, s.Node, check, "enable rpl_semi_sync_slave_enabled on the other node, or the source side off here",
				"waits for acknowledgements the other node never sends (its replica side is off): every commit waits the timeout, then falls back")
		}
	}
	if !replica(a) {
		return ok("pair", check, "not used")
	}
	return ok("pair", check, "replica side ON on both nodes; source side by role (local %s, peer %s)", onOff(source(a)), onOff(source(b)))
}

func checkClock(a, b *Server) Result {
	const check = "clock"
	if a.ClockErr != nil || b.ClockErr != nil {
		return bad(Skip, "pair", check, "", "cannot read a server's clock: %v", firstErr(a.ClockErr, b.ClockErr))
	}
	skew := b.Clock - a.Clock
	if skew < 0 {
		skew = -skew
	}
	slack := a.ClockUncertainty + b.ClockUncertainty
	d := fmt.Sprintf("skew %s (±%s)", skew.Round(time.Millisecond), slack.Round(time.Millisecond))
	fix := "run NTP (chrony, systemd-timesyncd) on both nodes"
	switch {
	case skew-slack > clockFail:
		return bad(Fail, "pair", check, fix, "%s: heartbeat lag and every timestamp compared across nodes are wrong", d)
	case skew-slack > clockWarn:
		return bad(Warn, "pair", check, fix, "%s", d)
	}
	return ok("pair", check, "%s", d)
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}
