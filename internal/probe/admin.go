package probe

// The statements that change a server: notify's fence and promotion run
// them through Admin, one dedicated connection each, so that session
// settings (lock_wait_timeout) stick and the connection id is known.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Execer is what Admin needs from a *sql.Conn.
type Execer interface {
	Querier
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Admin runs reads and changes on one connection to one server.
type Admin struct {
	Q Execer
	V Version
	// QueryTimeout bounds each statement that has no longer bound of its
	// own (waits take theirs from their argument).
	QueryTimeout time.Duration
	// DryRun makes every statement that would change the server a no-op;
	// it is only reported to Trace.
	DryRun bool
	// Trace, when set, is told every statement (executed or not).
	Trace func(stmt string, executed bool)
}

// Thread is one row of the processlist.
type Thread struct {
	ID             uint64
	User, Host, DB string
	Command, State string
	Time           int64
	Info           string
}

// Client reports whether t is a client session a fence must end: anything
// but replication threads, the event scheduler, replicas reading our binlog,
// the excluded connection ids and the exempt users.
func (t Thread) Client(spare map[uint64]bool, exemptUsers []string) bool {
	if spare[t.ID] || !userThread(t.User, t.Command) {
		return false
	}
	for _, u := range exemptUsers {
		if t.User == u {
			return false
		}
	}
	return true
}

func (a *Admin) timeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		d = a.QueryTimeout
	}
	if d <= 0 {
		d = 500 * time.Millisecond
	}
	return context.WithTimeout(ctx, d)
}

func (a *Admin) trace(stmt string, executed bool) {
	if a.Trace != nil {
		a.Trace(stmt, executed)
	}
}

// change runs a statement that changes the server (skipped in dry-run).
func (a *Admin) change(ctx context.Context, d time.Duration, stmt string) error {
	a.trace(stmt, !a.DryRun)
	if a.DryRun {
		return nil
	}
	qctx, cancel := a.timeout(ctx, d)
	defer cancel()
	if _, err := a.Q.ExecContext(qctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// row runs a read returning one row.
func (a *Admin) row(ctx context.Context, d time.Duration, q string, args []any, dst ...any) error {
	a.trace(q, true)
	qctx, cancel := a.timeout(ctx, d)
	defer cancel()
	if err := a.Q.QueryRowContext(qctx, q, args...).Scan(dst...); err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	return nil
}

// Errno returns the server error number in err, 0 if there is none.
func Errno(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// ConnectionID returns this connection's thread id, the one a fence spares.
func (a *Admin) ConnectionID(ctx context.Context) (uint64, error) {
	var id uint64
	err := a.row(ctx, 0, "SELECT CONNECTION_ID()", nil, &id)
	return id, err
}

// Processlist reads every thread.
func (a *Admin) Processlist(ctx context.Context) ([]Thread, error) {
	a.trace(processlistQuery, true)
	qctx, cancel := a.timeout(ctx, 0)
	defer cancel()
	rows, err := a.Q.QueryContext(qctx, processlistQuery)
	if err != nil {
		return nil, fmt.Errorf("reading the processlist: %w", err)
	}
	defer rows.Close()
	var out []Thread
	for rows.Next() {
		var t Thread
		if err := rows.Scan(&t.ID, &t.User, &t.Host, &t.DB, &t.Command, &t.Time, &t.State, &t.Info); err != nil {
			return nil, fmt.Errorf("reading the processlist: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the processlist: %w", err)
	}
	return out, nil
}

// ErrKillDenied means the server refused to end a session for lack of a
// privilege; the error says which one the account needs.
var ErrKillDenied = errors.New("not allowed to end this session")

// Kill ends a connection with a server-side KILL. A thread that is already
// gone ("unknown thread") is not an error.
func (a *Admin) Kill(ctx context.Context, id uint64) error {
	err := a.change(ctx, 0, killStatement(id))
	switch Errno(err) {
	case errnoUnknownThread:
		return nil
	case errnoKillDenied, errnoSpecificAccessDenied:
		return fmt.Errorf("%w: the account needs %s: %w", ErrKillDenied, killPrivileges(a.V), err)
	}
	return err
}

// SetLockWaitTimeout makes this session's SET GLOBAL read_only give up
// after one second instead of queueing behind a long write.
func (a *Admin) SetLockWaitTimeout(ctx context.Context) error {
	// Session-only, changes nothing on the server: runs in dry-run too.
	a.trace(lockWaitStatement, true)
	qctx, cancel := a.timeout(ctx, 0)
	defer cancel()
	if _, err := a.Q.ExecContext(qctx, lockWaitStatement); err != nil {
		return fmt.Errorf("%s: %w", lockWaitStatement, err)
	}
	return nil
}

// ErrLockWait means SET GLOBAL read_only gave up behind a running write.
var ErrLockWait = errors.New("lock wait timeout")

// SetReadOnly turns writes off (on=true) or back on. With on=true and a
// session lock_wait_timeout set, a write holding the server up makes it
// fail with ErrLockWait after the timeout: retry while killing.
func (a *Admin) SetReadOnly(ctx context.Context, on bool, d time.Duration) error {
	for _, st := range readOnlyStatements(a.V, on) {
		if err := a.change(ctx, d, st); err != nil {
			if Errno(err) == errnoLockWaitTimeout {
				return fmt.Errorf("%w: %w", ErrLockWait, err)
			}
			return err
		}
	}
	return nil
}

// ReadOnly reads read_only and super_read_only (false where absent).
func (a *Admin) ReadOnly(ctx context.Context) (ro, sro bool, err error) {
	var r, s int
	if err := a.row(ctx, 0, readOnlyQuery(a.V), nil, &r, &s); err != nil {
		return false, false, err
	}
	return r != 0, s != 0, nil
}

// StartReplication starts every replication channel.
func (a *Admin) StartReplication(ctx context.Context) error {
	return a.change(ctx, 0, startReplicationStatement(a.V))
}

// Replicas reads every replication channel through this connection.
func (a *Admin) Replicas(ctx context.Context) ([]Replica, error) {
	a.trace(replicaStatusQuery(a.V), true)
	p := Prober{Q: a.Q, QueryTimeout: a.QueryTimeout}
	return p.Replicas(ctx, a.V)
}

// Position is a server's own replication position.
type Position struct {
	ServerID uint32
	// GTID is gtid_binlog_pos (MariaDB) or gtid_executed (MySQL, "" when
	// gtid_mode is off).
	GTID string
	// Own is the part of the GTID state this server wrote itself: MariaDB
	// gtid_binlog_state entries with its server_id, MySQL the server_uuid
	// part of gtid_executed. It stops moving once writes are fenced, even
	// while replicated events from the peer keep being logged.
	Own    string
	Binlog *BinlogPos // nil when binary logging is off
}

func (p Position) String() string {
	var parts []string
	if p.GTID != "" {
		parts = append(parts, "gtid="+p.GTID)
	}
	if p.Binlog != nil {
		parts = append(parts, "binlog="+p.Binlog.String())
	}
	if len(parts) == 0 {
		return "unknown"
	}
	return strings.Join(parts, " ")
}

// Position reads the own binlog and GTID position.
func (a *Admin) Position(ctx context.Context) (Position, error) {
	var p Position
	var ownSrc string
	if err := a.row(ctx, 0, positionQuery(a.V), nil, &p.ServerID, &p.GTID, &ownSrc); err != nil {
		return p, err
	}
	if a.V.Flavor == MariaDB {
		p.Own = OwnMariaDBGTIDs(ownSrc, p.ServerID)
	} else {
		p.Own = OwnMySQLGTIDs(p.GTID, ownSrc)
	}
	a.trace(binlogStatusQuery(a.V), true)
	pr := Prober{Q: a.Q, QueryTimeout: a.QueryTimeout}
	b, err := pr.BinlogPos(ctx, a.V)
	if err != nil {
		return p, err
	}
	p.Binlog = b
	return p, nil
}

// ConnectionLost reports whether err means the connection itself is gone:
// killed by another session (a peer fencing this server), dropped, or shut
// down. Work on such a connection cannot be retried.
func ConnectionLost(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	switch Errno(err) {
	case 1053, // server shutdown in progress
		1927, // ER_CONNECTION_KILLED
		1317: // query execution was interrupted (KILL)
		return true
	}
	return false
}

// BinlogEvent is one row of SHOW BINLOG EVENTS.
type BinlogEvent struct {
	Pos       uint64
	Type      string
	ServerID  uint32
	EndLogPos uint64
}

// housekeepingEvents are written by every server into its own binary log
// whatever its clients do (at start, rotation and shutdown): they carry its
// server_id without being a write.
var housekeepingEvents = map[string]bool{
	"Format_desc": true, "Rotate": true, "Previous_gtids": true, "Stop": true,
	"Binlog_checkpoint": true, "Gtid_list": true, "Start_encryption": true, "Heartbeat": true,
}

// OwnWrite reports whether events hold a transaction this server wrote
// itself (rather than one it applied from its source and logged again).
func OwnWrite(events []BinlogEvent, serverID uint32) bool {
	for _, ev := range events {
		if ev.ServerID == serverID && !housekeepingEvents[ev.Type] {
			return true
		}
	}
	return false
}

// maxEventsScanned bounds how much of the binary log OwnWritesBetween
// reads: past it the answer is "maybe", which callers treat as a write.
const maxEventsScanned = 20000

// OwnWritesBetween reports whether this server's own binary log holds a
// write of its own between from and to. Without GTIDs this is the only way
// to tell a fenced node's own late writes from the peer's transactions it
// keeps logging (log_slave_updates). Too much to read counts as a write.
func (a *Admin) OwnWritesBetween(ctx context.Context, serverID uint32, from, to BinlogPos) (bool, error) {
	files := []string{from.File}
	if to.File != from.File {
		all, err := a.binlogFiles(ctx)
		if err != nil {
			return true, err
		}
		files = filesBetween(all, from.File, to.File)
		if files == nil {
			return true, fmt.Errorf("binary log %s or %s is no longer listed", from.File, to.File)
		}
	}
	scanned := 0
	for i, f := range files {
		pos := uint64(4)
		if i == 0 {
			pos = from.Pos
		}
		for {
			q := fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d LIMIT %d", strings.ReplaceAll(f, "'", "''"), pos, 1000)
			evs, err := a.binlogEvents(ctx, q)
			if err != nil {
				return true, err
			}
			last := f == to.File
			var in []BinlogEvent
			for _, ev := range evs {
				if last && ev.Pos >= to.Pos {
					break
				}
				in = append(in, ev)
			}
			if OwnWrite(in, serverID) {
				return true, nil
			}
			scanned += len(evs)
			if scanned > maxEventsScanned {
				return true, nil
			}
			if len(evs) < 1000 || len(in) < len(evs) {
				break
			}
			pos = evs[len(evs)-1].EndLogPos
		}
	}
	return false, nil
}

// filesBetween returns the binlog file names from first to last inclusive,
// nil if either is not listed.
func filesBetween(all []string, first, last string) []string {
	i, j := -1, -1
	for k, f := range all {
		if f == first {
			i = k
		}
		if f == last {
			j = k
		}
	}
	if i < 0 || j < i {
		return nil
	}
	return all[i : j+1]
}

func (a *Admin) binlogFiles(ctx context.Context) ([]string, error) {
	a.trace("SHOW BINARY LOGS", true)
	qctx, cancel := a.timeout(ctx, 0)
	defer cancel()
	pr := Prober{Q: a.Q, QueryTimeout: a.QueryTimeout}
	cols, rows, err := pr.queryStrings(qctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("SHOW BINARY LOGS: %w", err)
	}
	if len(cols) == 0 || cols[0] != "Log_name" {
		return nil, fmt.Errorf("SHOW BINARY LOGS: unexpected columns %q", cols)
	}
	var out []string
	for _, r := range rows {
		if len(r) > 0 && r[0] != nil {
			out = append(out, *r[0])
		}
	}
	return out, nil
}

func (a *Admin) binlogEvents(ctx context.Context, q string) ([]BinlogEvent, error) {
	a.trace(q, true)
	pr := Prober{Q: a.Q, QueryTimeout: a.QueryTimeout}
	cols, rows, err := pr.queryStrings(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	evs, err := ParseBinlogEvents(cols, rows)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	return evs, nil
}

// ParseBinlogEvents reads SHOW BINLOG EVENTS (Log_name, Pos, Event_type,
// Server_id, End_log_pos, Info on both families).
func ParseBinlogEvents(cols []string, rows [][]*string) ([]BinlogEvent, error) {
	idx := map[string]int{}
	for i, c := range cols {
		idx[c] = i
	}
	for _, need := range []string{"Pos", "Event_type", "Server_id", "End_log_pos"} {
		if _, ok := idx[need]; !ok {
			return nil, fmt.Errorf("unexpected result: no column %q", need)
		}
	}
	out := make([]BinlogEvent, 0, len(rows))
	for _, r := range rows {
		if len(r) != len(cols) {
			return nil, fmt.Errorf("unexpected result: %d values for %d columns", len(r), len(cols))
		}
		num := func(name string, bits int) (uint64, error) {
			v := r[idx[name]]
			if v == nil {
				return 0, fmt.Errorf("column %s is NULL", name)
			}
			n, err := strconv.ParseUint(*v, 10, bits)
			if err != nil {
				return 0, fmt.Errorf("column %s: %q is not a number", name, *v)
			}
			return n, nil
		}
		var ev BinlogEvent
		var err error
		var sid uint64
		if ev.Pos, err = num("Pos", 64); err != nil {
			return nil, err
		}
		if sid, err = num("Server_id", 32); err != nil {
			return nil, err
		}
		if ev.EndLogPos, err = num("End_log_pos", 64); err != nil {
			return nil, err
		}
		ev.ServerID = uint32(sid)
		if t := r[idx["Event_type"]]; t != nil {
			ev.Type = *t
		}
		out = append(out, ev)
	}
	return out, nil
}

// ReplicationThreads returns the processlist ids of this server's
// replication threads where the processlist cannot tell them from client
// sessions (see replicationThreadsQuery); nil where it can.
func (a *Admin) ReplicationThreads(ctx context.Context) (map[uint64]bool, error) {
	q := replicationThreadsQuery(a.V)
	if q == "" {
		return nil, nil
	}
	a.trace(q, true)
	qctx, cancel := a.timeout(ctx, 0)
	defer cancel()
	rows, err := a.Q.QueryContext(qctx, q)
	if err != nil {
		return nil, fmt.Errorf("listing replication threads: %w", err)
	}
	defer rows.Close()
	ids := map[uint64]bool{}
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("listing replication threads: %w", err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing replication threads: %w", err)
	}
	return ids, nil
}

// BusyAppliers counts parallel-replication workers still applying a
// transaction: the coordinator may have read the whole relay log while a
// worker still applies a long one.
func (a *Admin) BusyAppliers(ctx context.Context) (int, error) {
	if q := busyWorkersQuery(a.V); q != "" {
		var n int
		err := a.row(ctx, 0, q, nil, &n)
		return n, err
	}
	threads, err := a.Processlist(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range threads {
		if busyWorker(t) {
			n++
		}
	}
	return n, nil
}
