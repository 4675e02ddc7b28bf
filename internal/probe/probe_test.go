package probe

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// readVertical loads a recorded result set from testdata.
func readVertical(t *testing.T, name string) ([]string, [][]*string) {
	t.Helper()
	cols, rows, err := mariadbtest.ReadVertical(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return cols, rows
}

func TestParseVersion(t *testing.T) {
	cases := []struct {
		ver, comment string
		flavor       Flavor
		major, minor int
		patch        int
	}{
		{"10.11.19-MariaDB-0+deb12u1-log", "Debian 12", MariaDB, 10, 11, 19},
		{"5.5.5-10.3.39-MariaDB-0+deb10u2", "Debian 10", MariaDB, 10, 3, 39},
		{"11.4.2-MariaDB", "mariadb.org binary distribution", MariaDB, 11, 4, 2},
		{"8.0.36", "MySQL Community Server - GPL", MySQL, 8, 0, 36},
		{"8.4.0-commercial", "MySQL Enterprise Server", MySQL, 8, 4, 0},
		{"5.7.44-log", "MySQL Community Server (GPL)", MySQL, 5, 7, 44},
		{"8.0.35-27", "Percona Server (GPL), Release 27", MySQL, 8, 0, 35},
	}
	for _, tc := range cases {
		v, err := ParseVersion(tc.ver, tc.comment)
		if err != nil || v.Flavor != tc.flavor || v.Major != tc.major || v.Minor != tc.minor || v.Patch != tc.patch {
			t.Errorf("%q: got %+v %v", tc.ver, v, err)
		}
	}
	for _, bad := range []string{"", "garbage", "8", "8.x.1", "1.2.3.4", "-1.0"} {
		if _, err := ParseVersion(bad, ""); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestDialectQueries(t *testing.T) {
	v := func(s string) Version { x, _ := ParseVersion(s, ""); return x }
	cases := []struct {
		ver, replica, binlog, vars string
	}{
		{"10.11.6-MariaDB", "SHOW ALL SLAVES STATUS", "SHOW MASTER STATUS", "gtid_current_pos"},
		{"8.4.0", "SHOW REPLICA STATUS", "SHOW BINARY LOG STATUS", "super_read_only"},
		{"8.0.22", "SHOW REPLICA STATUS", "SHOW MASTER STATUS", "gtid_executed"},
		{"8.0.21", "SHOW SLAVE STATUS", "SHOW MASTER STATUS", "super_read_only"},
		{"5.7.44", "SHOW SLAVE STATUS", "SHOW MASTER STATUS", "super_read_only"},
		{"5.7.7", "SHOW SLAVE STATUS", "SHOW MASTER STATUS", "read_only, 0,"},
	}
	for _, tc := range cases {
		ver := v(tc.ver)
		if q := replicaStatusQuery(ver); q != tc.replica {
			t.Errorf("%s replica: %q", tc.ver, q)
		}
		if q := binlogStatusQuery(ver); q != tc.binlog {
			t.Errorf("%s binlog: %q", tc.ver, q)
		}
		if q := variablesQuery(ver); !strings.Contains(q, tc.vars) {
			t.Errorf("%s vars: %q lacks %q", tc.ver, q, tc.vars)
		}
	}
}

func TestParseRecordedReplicaStatus(t *testing.T) {
	t.Run("mysql 8.0 healthy", func(t *testing.T) {
		reps := mustParse(t, "mysql-8.0-show-replica-status-healthy.txt")
		r := reps[0]
		if r.SourceHost != "db1.example" || r.SourcePort != 3306 || r.SourceServerID != 11 || r.IORunning != "Yes" || !r.SQLRunning ||
			r.SecondsBehind == nil || *r.SecondsBehind != 0 || !r.CaughtUpFilePos() || r.ExecutedSet != "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("mysql 8.0 duplicate key", func(t *testing.T) {
		r := mustParse(t, "mysql-8.0-show-replica-status-1062.txt")[0]
		if r.SQLRunning || r.SQLErrno != 1062 || !strings.Contains(r.SQLError, "Duplicate entry '1042'") || r.SecondsBehind != nil ||
			r.CaughtUpFilePos() || r.ReadSourceLogPos != 15872 || r.ExecSourceLogPos != 7210 || !strings.Contains(r.ExecutedSet, "\n8a94f357") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("mysql 5.7 source unreachable", func(t *testing.T) {
		r := mustParse(t, "mysql-5.7-show-slave-status-connecting.txt")[0]
		if r.IORunning != "Connecting" || r.IOErrno != 2003 || !IsConnectErrno(r.IOErrno) || !r.SQLRunning || r.SecondsBehind != nil || r.CaughtUpFilePos() {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("mariadb 10.11 all slaves", func(t *testing.T) {
		r := mustParse(t, "mariadb-10.11-show-all-slaves-status.txt")[0]
		if r.Channel != "" || r.UsingGTID != "Current_Pos" || r.GTIDIOPos != "1-1-2" || r.SourceServerID != 1 || !r.CaughtUpFilePos() {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("no channels", func(t *testing.T) {
		reps, err := ParseReplicaStatus([]string{"Slave_IO_State"}, nil)
		if err != nil || len(reps) != 0 {
			t.Fatalf("%v %v", reps, err)
		}
	})
}

func mustParse(t *testing.T, name string) []Replica {
	t.Helper()
	cols, rows := readVertical(t, name)
	reps, err := ParseReplicaStatus(cols, rows)
	if err != nil || len(reps) != 1 {
		t.Fatalf("%s: %v %v", name, reps, err)
	}
	return reps
}

func TestParseReplicaStatusRejectsOddResults(t *testing.T) {
	s := func(v string) *string { return &v }
	cols := []string{"Slave_IO_Running", "Slave_SQL_Running", "Master_Host", "Seconds_Behind_Master", "Read_Master_Log_Pos"}
	cases := map[string][]*string{
		"unknown io state": {s("Maybe"), s("Yes"), s("h"), s("0"), s("4")},
		"bad lag":          {s("Yes"), s("Yes"), s("h"), s("soon"), s("4")},
		"bad position":     {s("Yes"), s("Yes"), s("h"), s("0"), s("-4")},
		"short row":        {s("Yes")},
	}
	for name, row := range cases {
		if _, err := ParseReplicaStatus(cols, [][]*string{row}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseReplicaStatus([]string{"Foo"}, [][]*string{{s("x")}}); err == nil {
		t.Error("missing columns accepted")
	}
}

func TestParseRecordedBinlogStatus(t *testing.T) {
	for name, want := range map[string]string{
		"mysql-8.4-show-binary-log-status.txt": "binlog.000042:197532",
		"mariadb-10.11-show-master-status.txt": "binlog.000001:695",
	} {
		cols, rows := readVertical(t, name)
		b, err := ParseBinlogStatus(cols, rows)
		if err != nil || b == nil || b.String() != want {
			t.Errorf("%s: %v %v", name, b, err)
		}
	}
	if b, err := ParseBinlogStatus([]string{"File", "Position"}, nil); b != nil || err != nil {
		t.Errorf("binlog off: %v %v", b, err)
	}
}

func FuzzParseReplicaStatus(f *testing.F) {
	f.Add("Slave_IO_Running\x00Slave_SQL_Running\x00Master_Host\x00Seconds_Behind_Master", "Yes\x00Yes\x00h\x000")
	f.Add("Replica_IO_Running\x00Replica_SQL_Running\x00Source_Host", "Connecting\x00No\x00")
	f.Fuzz(func(t *testing.T, cols, vals string) {
		c := strings.Split(cols, "\x00")
		var row []*string
		for _, v := range strings.Split(vals, "\x00") {
			if v == "NULL" {
				row = append(row, nil)
			} else {
				row = append(row, &v)
			}
		}
		reps, err := ParseReplicaStatus(c, [][]*string{row})
		if err == nil && len(reps) == 1 {
			if !reps[0].IORunning.Known() {
				t.Fatalf("accepted IO state %q", reps[0].IORunning)
			}
			_ = reps[0].Health().String() + reps[0].Problem()
		}
	})
}

func TestRealSnapshot(t *testing.T) {
	a, b := mariadbtest.Pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	if err := a.Exec(ctx, "SET GLOBAL read_only=OFF", "CREATE TABLE vgtest.t (id INT PRIMARY KEY)", "INSERT INTO vgtest.t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := b.SyncWith(ctx, a, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	snap := func(s *mariadbtest.Server) *Snapshot {
		t.Helper()
		db, err := Open(Target{Host: s.Host, Port: s.Port, User: mariadbtest.CheckUser, Password: mariadbtest.CheckPassword,
			ConnectTimeout: time.Second, QueryTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		p := &Prober{Q: db, QueryTimeout: time.Second, Binlog: true}
		sn, err := p.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return sn
	}
	sa, sb := snap(a), snap(b)
	if sa.Version.Flavor != MariaDB || !sa.Version.AtLeast(10, 0, 0) || sa.ServerID != 1 || !sa.Writable() || sa.Binlog == nil {
		t.Fatalf("writer snapshot: %+v", sa)
	}
	if sb.Writable() || sb.ServerID != 2 || len(sb.Replicas) != 1 {
		t.Fatalf("standby snapshot: %+v", sb)
	}
	r := sb.Replicas[0]
	if r.SourceServerID != 1 || r.SourcePort != a.Port || r.IORunning != "Yes" || !r.SQLRunning || r.UsingGTID != "Current_Pos" || !r.CaughtUpFilePos() {
		t.Fatalf("standby channel: %+v", r)
	}
	// Both nodes have applied the writer's domain; the standby's position
	// names it too (what the promotion gate compares).
	if !strings.Contains(sb.GTIDCurrentPos, "1-1-") || sa.GTIDBinlogPos == "" {
		t.Fatalf("gtid: writer binlog %q, standby current %q", sa.GTIDBinlogPos, sb.GTIDCurrentPos)
	}
	if r.ReadSourceLogPos != sa.Binlog.Pos || r.SourceLogFile != sa.Binlog.File {
		t.Fatalf("standby read %s:%d, writer at %s", r.SourceLogFile, r.ReadSourceLogPos, sa.Binlog)
	}
}
