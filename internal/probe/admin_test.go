package probe

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// A scripted database/sql driver: each statement is answered from a table
// of recorded results (MySQL 8 cannot run here), and every statement is
// recorded for SQL-text assertions.

type fakeResult struct {
	cols []string
	rows [][]driver.Value
	err  error
}

type fakeServer struct {
	mu      sync.Mutex
	answers map[string]fakeResult // by statement prefix
	seen    []string
	args    [][]driver.NamedValue
}

func (f *fakeServer) answer(q string, args []driver.NamedValue) fakeResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, q)
	f.args = append(f.args, args)
	for p, r := range f.answers {
		if strings.HasPrefix(q, p) {
			return r
		}
	}
	return fakeResult{err: errors.New("unscripted statement: " + q)}
}

type fakeConnector struct{ s *fakeServer }

func (c fakeConnector) Connect(context.Context) (driver.Conn, error) { return fakeConn{c.s}, nil }
func (c fakeConnector) Driver() driver.Driver                        { return nil }

type fakeConn struct{ s *fakeServer }

func (fakeConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("no prepare") }
func (fakeConn) Close() error                        { return nil }
func (fakeConn) Begin() (driver.Tx, error)           { return nil, errors.New("no tx") }
func (c fakeConn) QueryContext(_ context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	r := c.s.answer(q, args)
	if r.err != nil {
		return nil, r.err
	}
	return &fakeRows{cols: r.cols, rows: r.rows}, nil
}
func (c fakeConn) ExecContext(_ context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	r := c.s.answer(q, args)
	if r.err != nil {
		return nil, r.err
	}
	return driver.RowsAffected(0), nil
}

type fakeRows struct {
	cols []string
	rows [][]driver.Value
}

func (r *fakeRows) Columns() []string { return r.cols }
func (r *fakeRows) Close() error      { return nil }
func (r *fakeRows) Next(dst []driver.Value) error {
	if len(r.rows) == 0 {
		return io.EOF
	}
	copy(dst, r.rows[0])
	r.rows = r.rows[1:]
	return nil
}

func one(v ...driver.Value) fakeResult {
	cols := make([]string, len(v))
	for i := range cols {
		cols[i] = "c"
	}
	return fakeResult{cols: cols, rows: [][]driver.Value{v}}
}

var (
	mysql8036 = Version{Flavor: MySQL, Major: 8, Minor: 0, Patch: 36}
	mysql8025 = Version{Flavor: MySQL, Major: 8, Minor: 0, Patch: 25}
	mysql57   = Version{Flavor: MySQL, Major: 5, Minor: 7, Patch: 44}
	mariadb   = Version{Flavor: MariaDB, Major: 10, Minor: 11, Patch: 6}
)

func fakeAdmin(t *testing.T, v Version, answers map[string]fakeResult) (*Admin, *fakeServer) {
	t.Helper()
	s := &fakeServer{answers: answers}
	db := sql.OpenDB(fakeConnector{s})
	t.Cleanup(func() { db.Close() })
	return &Admin{Q: db, V: v, QueryTimeout: time.Second}, s
}

func TestReadOnlyStatements(t *testing.T) {
	for _, tc := range []struct {
		v    Version
		on   bool
		want string
	}{
		{mysql8036, true, "SET GLOBAL super_read_only = ON"},
		{mysql8036, false, "SET GLOBAL super_read_only = OFF;SET GLOBAL read_only = OFF"},
		{mysql57, true, "SET GLOBAL super_read_only = ON"},
		{Version{Flavor: MySQL, Major: 5, Minor: 6, Patch: 51}, true, "SET GLOBAL read_only = ON"},
		{mariadb, true, "SET GLOBAL read_only = ON"},
		{mariadb, false, "SET GLOBAL read_only = OFF"},
	} {
		if got := strings.Join(readOnlyStatements(tc.v, tc.on), ";"); got != tc.want {
			t.Errorf("%s on=%v: %q, want %q", tc.v, tc.on, got, tc.want)
		}
	}
}

func TestAdminDialectSQL(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{startReplicationStatement(mariadb), "START ALL SLAVES"},
		{startReplicationStatement(mysql8036), "START REPLICA"},
		{startReplicationStatement(mysql57), "START SLAVE"},
		{posWaitQuery(mysql8036), "SELECT SOURCE_POS_WAIT(?, ?, ?)"},
		{posWaitQuery(mysql8025), "SELECT MASTER_POS_WAIT(?, ?, ?)"},
		{posWaitQuery(mariadb), "SELECT MASTER_POS_WAIT(?, ?, ?)"},
		{gtidWaitQuery(mariadb), "SELECT MASTER_GTID_WAIT(?, ?)"},
		{gtidWaitQuery(mysql8036), "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)"},
		{appliedGTIDQuery(mariadb), "SELECT @@global.gtid_current_pos"},
		{killStatement(42), "KILL CONNECTION 42"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestWaitResults(t *testing.T) {
	for _, tc := range []struct {
		v       Version
		valid   bool
		n       int64
		done    bool
		wantErr bool
	}{
		{mysql8036, true, 0, true, false},
		{mysql8036, true, 1, false, false}, // WAIT_FOR_EXECUTED_GTID_SET timeout
		{mysql8036, true, -1, false, true},
		{mysql8036, false, 0, false, true},
		{mariadb, true, 0, true, false},
		{mariadb, true, -1, false, false}, // MASTER_GTID_WAIT timeout
		{mariadb, true, 1, false, true},
		{mariadb, false, 0, false, true},
	} {
		done, err := gtidWaitDone(tc.v, tc.valid, tc.n)
		if done != tc.done || (err != nil) != tc.wantErr {
			t.Errorf("gtid %s valid=%v n=%d: done=%v err=%v", tc.v.Flavor, tc.valid, tc.n, done, err)
		}
	}
	for _, tc := range []struct {
		valid   bool
		n       int64
		done    bool
		wantErr bool
	}{
		{false, 0, false, true}, // NULL: SQL thread not running
		{true, -1, false, false},
		{true, 0, true, false},
		{true, 17, true, false},
		{true, -2, false, true},
	} {
		done, err := posWaitDone(tc.valid, tc.n)
		if done != tc.done || (err != nil) != tc.wantErr {
			t.Errorf("pos valid=%v n=%d: done=%v err=%v", tc.valid, tc.n, done, err)
		}
	}
}

func TestAdminMySQL8Recorded(t *testing.T) {
	ctx := context.Background()
	uuid := "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	other := "8a94f357-aab4-11df-86ab-c80aa9429563"
	a, s := fakeAdmin(t, mysql8036, map[string]fakeResult{
		"SELECT WAIT_FOR_EXECUTED_GTID_SET": one(int64(1)),
		"SELECT SOURCE_POS_WAIT":            one(nil),
		"SELECT GTID_SUBSET":                one(int64(0)),
		"KILL CONNECTION 7":                 {err: &mysql.MySQLError{Number: 1094, Message: "Unknown thread id: 7"}},
		"KILL CONNECTION 8":                 {err: &mysql.MySQLError{Number: 1095, Message: "You are not owner of thread 8"}},
		"SET GLOBAL super_read_only = ON":   {err: &mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded"}},
		"SELECT @@global.server_id":         one(int64(1), other+":1-10,"+uuid+":1-42", uuid),
		"SHOW MASTER STATUS": {cols: []string{"File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB", "Executed_Gtid_Set"},
			rows: [][]driver.Value{{"binlog.000003", "1234", "", "", uuid + ":1-42"}}},
	})
	if ok, err := a.WaitGTID(ctx, uuid+":1-50", 300*time.Millisecond); ok || err != nil {
		t.Fatalf("WaitGTID timeout: ok=%v err=%v", ok, err)
	}
	if got := s.args[len(s.args)-1][1].Value; got != int64(1) {
		t.Fatalf("MySQL wait timeout argument %v, want whole seconds (1)", got)
	}
	if _, err := a.WaitPos(ctx, "binlog.000009", 4, time.Second); err == nil || !strings.Contains(err.Error(), "SQL thread") {
		t.Fatalf("WaitPos NULL: %v", err)
	}
	if ok, why, err := a.Applied(ctx, uuid+":1-50"); ok || err != nil || why == "" {
		t.Fatalf("Applied: %v %q %v", ok, why, err)
	}
	if err := a.Kill(ctx, 7); err != nil {
		t.Fatalf("unknown thread must count as gone: %v", err)
	}
	if err := a.Kill(ctx, 8); err == nil {
		t.Fatal("a refused KILL must be an error")
	}
	if err := a.SetReadOnly(ctx, true, time.Second); !errors.Is(err, ErrLockWait) {
		t.Fatalf("1205 must be ErrLockWait: %v", err)
	}
	p, err := a.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Own != uuid+":1-42" || p.Binlog == nil || p.Binlog.Pos != 1234 {
		t.Fatalf("position %+v", p)
	}
	want := []string{"SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)", "SELECT SOURCE_POS_WAIT(?, ?, ?)", "SELECT GTID_SUBSET(?, @@global.gtid_executed)",
		"KILL CONNECTION 7", "KILL CONNECTION 8", "SET GLOBAL super_read_only = ON"}
	for i, w := range want {
		if s.seen[i] != w {
			t.Errorf("statement %d: %q, want %q", i, s.seen[i], w)
		}
	}
}

func TestAdminDryRunChangesNothing(t *testing.T) {
	var traced []string
	a, s := fakeAdmin(t, mariadb, map[string]fakeResult{})
	a.DryRun = true
	a.Trace = func(stmt string, executed bool) {
		if !executed {
			traced = append(traced, stmt)
		}
	}
	ctx := context.Background()
	if err := a.SetReadOnly(ctx, true, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Kill(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := a.StartReplication(ctx); err != nil {
		t.Fatal(err)
	}
	if len(s.seen) != 0 {
		t.Fatalf("dry-run sent %q", s.seen)
	}
	if strings.Join(traced, ";") != "SET GLOBAL read_only = ON;KILL CONNECTION 5;START ALL SLAVES" {
		t.Fatalf("traced %q", traced)
	}
}

func TestMariaDBGTIDs(t *testing.T) {
	for _, tc := range []struct {
		have, want string
		ok         bool
	}{
		{"1-1-10,2-2-5", "1-1-10", true},
		{"1-1-9,2-2-5", "1-1-10", false},
		{"2-2-5", "1-1-1", false},
		{"1-1-10", "", true},
		{"1-2-12", "1-1-10", true}, // same domain, later GTID from another server
	} {
		ok, behind, err := MariaDBCovers(tc.have, tc.want)
		if err != nil || ok != tc.ok {
			t.Errorf("covers(%q, %q) = %v %q %v", tc.have, tc.want, ok, behind, err)
		}
	}
	if _, _, err := MariaDBCovers("1-x-3", "1-1-1"); err == nil {
		t.Error("bad GTID accepted")
	}
	if got := OwnMariaDBGTIDs("0-1-5,0-2-9,1-1-3", 1); got != "0-1-5,1-1-3" {
		t.Errorf("own: %q", got)
	}
	if got, _ := ForeignMariaDBGTIDs("1-1-6,2-2-4", 2); got != "1-1-6" {
		t.Errorf("foreign: %q", got)
	}
}

func TestThreadClient(t *testing.T) {
	spare := map[uint64]bool{1: true}
	for _, tc := range []struct {
		t    Thread
		kill bool
	}{
		{Thread{ID: 1, User: "root", Command: "Query"}, false},
		{Thread{ID: 2, User: "system user", Command: "Slave_SQL"}, false},
		{Thread{ID: 3, User: "event_scheduler", Command: "Daemon"}, false},
		{Thread{ID: 4, User: "repl", Command: "Binlog Dump GTID"}, false},
		{Thread{ID: 5, User: "monitor", Command: "Sleep"}, false},
		{Thread{ID: 6, User: "app", Command: "Query"}, true},
		{Thread{ID: 7, User: "admin", Command: "Sleep"}, true}, // READ_ONLY ADMIN users too
		{Thread{ID: 8, User: "app", Command: "Killed"}, true},
	} {
		if got := tc.t.Client(spare, []string{"monitor"}); got != tc.kill {
			t.Errorf("%+v: client=%v, want %v", tc.t, got, tc.kill)
		}
	}
}
