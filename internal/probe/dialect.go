package probe

// This file holds every difference between MySQL and MariaDB that vipguard
// relies on, so that the rest of the code never asks "which server is this?".

import (
	"fmt"
	"strconv"
	"strings"
)

// Flavor is the server family.
type Flavor int

const (
	MySQL Flavor = iota + 1 // Oracle MySQL and Percona Server
	MariaDB
)

func (f Flavor) String() string {
	switch f {
	case MySQL:
		return "mysql"
	case MariaDB:
		return "mariadb"
	}
	return "unknown"
}

// Version identifies a server build.
type Version struct {
	Flavor              Flavor
	Major, Minor, Patch int
	Raw                 string // @@version as the server reports it
}

func (v Version) String() string {
	return fmt.Sprintf("%s %d.%d.%d", v.Flavor, v.Major, v.Minor, v.Patch)
}

// AtLeast reports whether v is major.minor.patch or newer.
func (v Version) AtLeast(major, minor, patch int) bool {
	if v.Major != major {
		return v.Major > major
	}
	if v.Minor != minor {
		return v.Minor > minor
	}
	return v.Patch >= patch
}

// ParseVersion reads @@version (and @@version_comment) into a Version.
// MariaDB may prefix the real version with "5.5.5-" for old clients.
func ParseVersion(version, comment string) (Version, error) {
	v := Version{Raw: version, Flavor: MySQL}
	s := version
	if strings.Contains(strings.ToLower(version+" "+comment), "mariadb") {
		v.Flavor = MariaDB
		s = strings.TrimPrefix(s, "5.5.5-")
	}
	num := s
	if i := strings.IndexAny(num, "-+ "); i >= 0 {
		num = num[:i]
	}
	parts := strings.Split(num, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return v, fmt.Errorf("cannot parse server version %q", version)
	}
	nums := [3]int{}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 9999 {
			return v, fmt.Errorf("cannot parse server version %q", version)
		}
		nums[i] = n
	}
	v.Major, v.Minor, v.Patch = nums[0], nums[1], nums[2]
	return v, nil
}

// replicaStatusQuery lists every replication channel of the server.
func replicaStatusQuery(v Version) string {
	switch {
	case v.Flavor == MariaDB:
		// ALL covers named (multi-source) connections too.
		return "SHOW ALL SLAVES STATUS"
	case v.AtLeast(8, 0, 22):
		return "SHOW REPLICA STATUS"
	}
	return "SHOW SLAVE STATUS"
}

// binlogStatusQuery returns the own binary log coordinates.
func binlogStatusQuery(v Version) string {
	if v.Flavor == MySQL && v.AtLeast(8, 2, 0) {
		return "SHOW BINARY LOG STATUS" // SHOW MASTER STATUS is gone in 8.4
	}
	return "SHOW MASTER STATUS"
}

// variablesQuery reads the flavor-specific global state in one round trip.
// Columns: read_only, super_read_only, gtid_mode, gtid_binlog, gtid_current,
// gtid_slave, gtid_executed.
func variablesQuery(v Version) string {
	if v.Flavor == MariaDB {
		return "SELECT @@global.read_only, 0, 'ON', @@global.gtid_binlog_pos, @@global.gtid_current_pos, @@global.gtid_slave_pos, ''"
	}
	sro := "@@global.super_read_only"
	gtid := "@@global.gtid_mode, '', '', '', @@global.gtid_executed"
	if !v.AtLeast(5, 7, 8) {
		sro = "0"
	}
	if !v.AtLeast(5, 6, 5) {
		gtid = "'OFF', '', '', '', ''"
	}
	return "SELECT @@global.read_only, " + sro + ", " + gtid
}

// canonicalColumn maps MySQL 8.0.22+ replica status column names to the
// classic names MariaDB and MySQL 5.7 still use, so one parser serves all.
func canonicalColumn(c string) string {
	switch c {
	case "Channel_Name", "Connection_name":
		return "Channel"
	}
	c = strings.ReplaceAll(c, "Source", "Master")
	c = strings.ReplaceAll(c, "Replica", "Slave")
	return c
}

// connectErrnos are client errors an IO thread reports while its source is
// unreachable. They are what a healthy standby shows when the writer died, so
// they must not make it unfit.
var connectErrnos = map[int]bool{
	2002: true, // can't connect through socket
	2003: true, // can't connect to server
	2005: true, // unknown host
	2006: true, // server has gone away
	2013: true, // lost connection during query
	2026: true, // SSL connection error
	1040: true, // too many connections
	1129: true, // host blocked
	1159: true, // network read timeout
	1160: true, // network write error
	1161: true, // network write timeout
}

// IsConnectErrno reports whether a replication IO error only means the source
// cannot be reached right now.
func IsConnectErrno(n int) bool { return connectErrnos[n] }

// sourceCommandFailure are the IO thread errors that wrap another error: a
// command of the connect sequence (COM_REGISTER_SLAVE, the binlog dump
// request) failed, with the inner error's number in the message ("…
// failed: Lost connection … (Errno: 2013)").
var sourceCommandFailure = map[int]bool{
	1597:  true, // ER_SLAVE_MASTER_COM_FAILURE: MariaDB, MySQL 5.7
	13120: true, // ER_REPLICA_SOURCE_COM_FAILURE: MySQL 8.0 (error-log range)
}

// errnoShutdown is ER_SERVER_SHUTDOWN, what a source answers commands with
// while it shuts down.
const errnoShutdown = 1053

// userThread reports whether a processlist row is a client session a fence
// must kill: not a replication thread, not the event scheduler, not a
// replica reading our binlog, and not idle server-internal threads.
func userThread(user, command string) bool {
	switch user {
	case "system user", "event_scheduler":
		return false
	}
	switch command {
	case "Binlog Dump", "Binlog Dump GTID", "Daemon", "Slave_IO", "Slave_SQL", "Slave_worker":
		return false
	}
	return true
}

// The statements notify's fence and promotion run. Everything here is SQL
// text or the reading of a result; the logic is in admin.go and wait.go.

// processlistQuery lists every thread. information_schema works on both
// families (MySQL 8 deprecates it in favour of performance_schema, which may
// be disabled, so the old table is the one that is always there).
const processlistQuery = "SELECT ID, USER, IFNULL(HOST, ''), IFNULL(DB, ''), IFNULL(COMMAND, ''), IFNULL(TIME, 0), IFNULL(STATE, ''), LEFT(IFNULL(INFO, ''), 120) FROM information_schema.PROCESSLIST"

// lockWaitStatement makes SET GLOBAL read_only give up after 1 s (error
// 1205) instead of waiting behind a long write; 1 is MySQL's minimum.
const lockWaitStatement = "SET SESSION lock_wait_timeout = 1"

// errnoLockWaitTimeout is ER_LOCK_WAIT_TIMEOUT.
const errnoLockWaitTimeout = 1205

// errnoUnknownThread is ER_NO_SUCH_THREAD: the thread is already gone.
const errnoUnknownThread = 1094

func killStatement(id uint64) string { return "KILL CONNECTION " + strconv.FormatUint(id, 10) }

// The errors KILL answers when the account may not end that session:
// ER_KILL_DENIED_ERROR when it lacks the privilege to end other accounts'
// sessions, and, on MySQL 8.0.16+, ER_SPECIFIC_ACCESS_DENIED_ERROR too
// when the session's account holds SYSTEM_USER and ours does not.
const (
	errnoKillDenied           = 1095
	errnoSpecificAccessDenied = 1227
)

// killPrivileges names what the fence's account needs to end any client
// session on this server.
func killPrivileges(v Version) string {
	switch {
	case v.Flavor == MariaDB && v.AtLeast(10, 5, 2):
		return "CONNECTION ADMIN"
	case v.Flavor == MariaDB:
		return "SUPER"
	case v.AtLeast(8, 0, 16):
		return "CONNECTION_ADMIN, and SYSTEM_USER to end sessions of accounts that hold SYSTEM_USER (root@localhost does)"
	case v.AtLeast(8, 0, 0):
		return "CONNECTION_ADMIN"
	}
	return "SUPER"
}

// ReadOnlyStopsEveryone reports whether, once read_only is on, no client
// session can write, whatever its privileges: MySQL's super_read_only also
// stops SUPER and SYSTEM_VARIABLES_ADMIN holders. MariaDB's read_only lets
// READ_ONLY ADMIN (SUPER before 10.11) holders write, so a session that was
// not ended may still write there.
func ReadOnlyStopsEveryone(v Version) bool { return v.Flavor == MySQL && v.AtLeast(5, 7, 8) }

// readOnlyStatements turns writes off (on=true) or on again. MySQL's
// super_read_only=ON implies read_only=ON and also stops SUPER users;
// read_only=OFF implies super_read_only=OFF. MariaDB has no super_read_only:
// its READ_ONLY ADMIN users must be killed instead.
func readOnlyStatements(v Version, on bool) []string {
	hasSuper := v.Flavor == MySQL && v.AtLeast(5, 7, 8)
	switch {
	case on && hasSuper:
		return []string{"SET GLOBAL super_read_only = ON"}
	case on:
		return []string{"SET GLOBAL read_only = ON"}
	case hasSuper:
		return []string{"SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"}
	}
	return []string{"SET GLOBAL read_only = OFF"}
}

// readOnlyQuery returns read_only and super_read_only (0 where absent).
func readOnlyQuery(v Version) string {
	if v.Flavor == MySQL && v.AtLeast(5, 7, 8) {
		return "SELECT @@global.read_only, @@global.super_read_only"
	}
	return "SELECT @@global.read_only, 0"
}

// startReplicationStatement starts every replication channel.
func startReplicationStatement(v Version) string {
	switch {
	case v.Flavor == MariaDB:
		return "START ALL SLAVES"
	case v.AtLeast(8, 0, 22):
		return "START REPLICA"
	}
	return "START SLAVE"
}

// positionQuery returns server_id, the GTID position (MariaDB
// gtid_binlog_pos, MySQL gtid_executed) and what identifies this server's
// own transactions in it (MariaDB gtid_binlog_state, MySQL server_uuid).
func positionQuery(v Version) string {
	switch {
	case v.Flavor == MariaDB:
		return "SELECT @@global.server_id, @@global.gtid_binlog_pos, @@global.gtid_binlog_state"
	case v.AtLeast(5, 6, 5):
		return "SELECT @@global.server_id, IF(@@global.gtid_mode = 'ON', @@global.gtid_executed, ''), @@global.server_uuid"
	}
	return "SELECT @@global.server_id, '', ''"
}

// appliedGTIDQuery returns what a server has applied or written, the set
// a promotion target is compared with.
func appliedGTIDQuery(v Version) string {
	if v.Flavor == MariaDB {
		return "SELECT @@global.gtid_current_pos"
	}
	return "SELECT @@global.gtid_executed"
}

// gtidSubsetQuery asks the server (MySQL) whether a set is applied.
const gtidSubsetQuery = "SELECT GTID_SUBSET(?, @@global.gtid_executed)"

// gtidWaitQuery blocks until a GTID position is applied or the timeout (in
// seconds) passes. MariaDB's MASTER_GTID_WAIT waits on gtid_slave_pos only:
// give it only GTIDs this server receives by replication.
func gtidWaitQuery(v Version) string {
	if v.Flavor == MariaDB {
		return "SELECT MASTER_GTID_WAIT(?, ?)"
	}
	return "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)"
}

// gtidWaitDone reads gtidWaitQuery's result: reached, timed out, or an error.
// MariaDB answers 0 (reached) or -1 (timeout); MySQL's
// WAIT_FOR_EXECUTED_GTID_SET answers 0 (reached) or 1 (timeout), the
// opposite sense to the removed WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS.
func gtidWaitDone(v Version, valid bool, n int64) (bool, error) {
	if !valid {
		return false, fmt.Errorf("GTID wait returned NULL")
	}
	timeout := int64(1)
	if v.Flavor == MariaDB {
		timeout = -1
	}
	switch n {
	case 0:
		return true, nil
	case timeout:
		return false, nil
	}
	return false, fmt.Errorf("GTID wait returned unexpected %d", n)
}

// posWaitQuery blocks until the SQL thread has executed up to the source's
// file:pos, or the timeout (seconds) passes.
func posWaitQuery(v Version) string {
	if v.Flavor == MySQL && v.AtLeast(8, 0, 26) {
		return "SELECT SOURCE_POS_WAIT(?, ?, ?)"
	}
	return "SELECT MASTER_POS_WAIT(?, ?, ?)"
}

// posWaitDone reads posWaitQuery's result: NULL means the SQL thread is not
// running (or an error), -1 a timeout, 0 or more the number of events waited.
func posWaitDone(valid bool, n int64) (bool, error) {
	switch {
	case !valid:
		return false, fmt.Errorf("position wait returned NULL: the replication SQL thread is not running")
	case n == -1:
		return false, nil
	case n >= 0:
		return true, nil
	}
	return false, fmt.Errorf("position wait returned unexpected %d", n)
}

// busyWorkersQuery counts parallel-replication workers applying a
// transaction where the processlist cannot tell (MySQL's workers show as
// plain Connect threads); "" where it can (MariaDB's Slave_worker rows).
func busyWorkersQuery(v Version) string {
	if v.Flavor == MySQL && v.AtLeast(8, 0, 2) {
		return "SELECT COUNT(*) FROM performance_schema.replication_applier_status_by_worker WHERE APPLYING_TRANSACTION <> ''"
	}
	return ""
}

// busyWorker reports whether a processlist row is a MariaDB parallel
// replication worker that is not waiting for work.
func busyWorker(t Thread) bool {
	return t.Command == "Slave_worker" && t.State != "Waiting for work from SQL thread"
}

// replicationThreadsQuery lists the processlist ids of the replication
// threads, where the processlist alone cannot tell them from clients:
// MySQL 8.0.18+ runs the applier (coordinator and workers) under the
// channel's PRIVILEGE_CHECKS_USER account, shown as USER with Command
// Query or Connect. "" where the processlist suffices (MariaDB: always
// "system user").
func replicationThreadsQuery(v Version) string {
	if v.Flavor == MySQL && v.AtLeast(8, 0, 18) {
		return "SELECT PROCESSLIST_ID FROM performance_schema.threads WHERE PROCESSLIST_ID IS NOT NULL AND NAME IN (" +
			"'thread/sql/replica_io', 'thread/sql/replica_sql', 'thread/sql/replica_worker', " +
			"'thread/sql/slave_io', 'thread/sql/slave_sql', 'thread/sql/slave_worker')"
	}
	return ""
}
