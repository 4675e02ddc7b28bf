package probe

import (
	"context"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// Tests of MySQL 8 behaviour on recorded result sets (testdata/README.md
// says where each comes from).

func TestRecordedMySQL84MultiChannel(t *testing.T) {
	cols, rows := readVertical(t, "mysql-8.4-show-replica-status-multichannel.txt")
	reps, err := ParseReplicaStatus(cols, rows)
	if err != nil || len(reps) != 2 {
		t.Fatalf("%v %v", reps, err)
	}
	if reps[0].Channel != "" || reps[0].Health() != Streaming {
		t.Errorf("default channel: %q %v", reps[0].Channel, reps[0].Health())
	}
	if reps[1].Channel != "db2" || reps[1].Health() != SourceUnreachable || reps[1].Problem() != "" {
		t.Errorf("db2: %q %v %q", reps[1].Channel, reps[1].Health(), reps[1].Problem())
	}
	// Executed_Gtid_Set is the server's set on every row, over lines.
	if _, err := ParseMySQLGTIDSet(reps[1].ExecutedSet); err != nil || !strings.Contains(reps[1].ExecutedSet, "\n") {
		t.Errorf("executed set %q: %v", reps[1].ExecutedSet, err)
	}
}

func TestRecordedMySQL84BinaryLogStatusMultiLine(t *testing.T) {
	cols, rows := readVertical(t, "mysql-8.4-show-binary-log-status-multiline-gtid.txt")
	b, err := ParseBinlogStatus(cols, rows)
	if err != nil || b == nil {
		t.Fatalf("%v %v", b, err)
	}
	var set string
	for i, c := range cols {
		if c == "Executed_Gtid_Set" {
			set = *rows[0][i]
		}
	}
	// The own part is found whatever line it is on.
	if own := OwnMySQLGTIDs(set, "8A94F357-AAB4-11DF-86AB-C80AA9429562"); own != "8a94f357-aab4-11df-86ab-c80aa9429562:1-55:57" {
		t.Fatalf("own GTIDs %q of %q", own, set)
	}
	if _, err := ParseMySQLGTIDSet(set); err != nil {
		t.Fatal(err)
	}
}

func TestRecordedMySQL8RegisterFailure(t *testing.T) {
	r := mustParse(t, "mysql-8.0-show-replica-status-register-failure.txt")[0]
	if r.IOErrno != 13120 || r.Health() != SourceUnreachable {
		t.Fatalf("register failure %d %q: %v", r.IOErrno, r.IOError, r.Health())
	}
}

// With PRIVILEGE_CHECKS_USER the applier's threads show that account as
// USER: the processlist alone makes them look like client sessions. The
// fence spares the ids performance_schema names replication threads.
func TestRecordedPrivilegeChecksUserApplier(t *testing.T) {
	ctx := context.Background()
	pcols, prows := readVertical(t, "mysql-8.0-processlist-privilege-checks-user.txt")
	_, trows := readVertical(t, "mysql-8.0-performance-schema-replication-threads.txt")
	a, _ := fakeAdmin(t, mysql8036, map[string]fakeResult{
		processlistQuery:                    recorded(pcols, prows),
		"SELECT PROCESSLIST_ID FROM perfor": recorded([]string{"PROCESSLIST_ID"}, trows),
	})
	threads, err := a.Processlist(ctx)
	if err != nil || len(threads) != 8 {
		t.Fatalf("%d threads: %v", len(threads), err)
	}
	repl, err := a.ReplicationThreads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var clients []string
	for _, th := range threads {
		if th.Client(repl, nil) {
			clients = append(clients, th.User)
		}
	}
	if got := strings.Join(clients, ","); got != "app,root" {
		t.Fatalf("client sessions %q, want app,root (never the applier)", got)
	}
	// MariaDB needs no such query: its replication threads are "system user".
	if q := replicationThreadsQuery(mariadb); q != "" {
		t.Fatalf("mariadb: %q", q)
	}
}

// recorded turns a recorded result set into a scripted answer; NULL reads
// as "" the way processlistQuery's IFNULLs make the server answer.
func recorded(cols []string, rows [][]*string) fakeResult {
	r := fakeResult{cols: cols}
	for _, row := range rows {
		vals := make([]driver.Value, len(row))
		for i, v := range row {
			if v == nil {
				vals[i] = ""
			} else {
				vals[i] = *v
			}
		}
		r.rows = append(r.rows, vals)
	}
	return r
}

// KILL refused for a missing privilege says which privilege, per version.
func TestKillDeniedNamesPrivilege(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		v     Version
		errno uint16
		want  string
	}{
		{mysql8036, 1095, "SYSTEM_USER"},
		{mysql8036, 1227, "SYSTEM_USER"},
		{mysql57, 1095, "SUPER"},
		{mariadb, 1095, "CONNECTION ADMIN"},
	} {
		a, _ := fakeAdmin(t, tc.v, map[string]fakeResult{
			"KILL CONNECTION 9": {err: &mysql.MySQLError{Number: tc.errno, Message: "You are not owner of thread 9"}},
		})
		err := a.Kill(ctx, 9)
		if !errors.Is(err, ErrKillDenied) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "not owner") {
			t.Errorf("%s %d: %v", tc.v, tc.errno, err)
		}
	}
}

func TestBusyAppliers(t *testing.T) {
	ctx := context.Background()
	a, s := fakeAdmin(t, mysql8036, map[string]fakeResult{"SELECT COUNT(*) FROM performance_schema.replication_applier_status_by_worker": one(int64(2))})
	if n, err := a.BusyAppliers(ctx); n != 2 || err != nil || len(s.seen) != 1 {
		t.Fatalf("mysql 8: %d %v %q", n, err, s.seen)
	}
	a, _ = fakeAdmin(t, mariadb, map[string]fakeResult{processlistQuery: {cols: []string{"ID", "USER", "HOST", "DB", "COMMAND", "TIME", "STATE", "INFO"},
		rows: [][]driver.Value{
			{int64(3), "system user", "", "", "Slave_worker", int64(0), "Waiting for work from SQL thread", ""},
			{int64(4), "system user", "", "", "Slave_worker", int64(9), "Update_rows_log_event::find_row(-1)", ""},
			{int64(5), "system user", "", "", "Slave_SQL", int64(9), "Slave has read all relay log; waiting for more updates", ""},
		}}})
	if n, err := a.BusyAppliers(ctx); n != 1 || err != nil {
		t.Fatalf("mariadb: %d %v", n, err)
	}
}
