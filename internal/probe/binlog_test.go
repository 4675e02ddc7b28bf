package probe

import (
	"context"
	"testing"
	"time"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

func TestOwnWrite(t *testing.T) {
	peer := []BinlogEvent{{Type: "Gtid", ServerID: 1}, {Type: "Query", ServerID: 1}, {Type: "Xid", ServerID: 1}}
	rotation := []BinlogEvent{{Type: "Rotate", ServerID: 2}, {Type: "Format_desc", ServerID: 2}, {Type: "Gtid_list", ServerID: 2},
		{Type: "Binlog_checkpoint", ServerID: 2}, {Type: "Previous_gtids", ServerID: 2}}
	if OwnWrite(append(peer, rotation...), 2) {
		t.Error("the peer's transactions and a rotation count as own writes")
	}
	if !OwnWrite(append(peer, BinlogEvent{Type: "Write_rows_v1", ServerID: 2}), 2) {
		t.Error("an own row event is not an own write")
	}
	if _, err := ParseBinlogEvents([]string{"Log_name", "Pos"}, nil); err == nil {
		t.Error("missing columns accepted")
	}
	s := func(v string) *string { return &v }
	cols := []string{"Log_name", "Pos", "Event_type", "Server_id", "End_log_pos", "Info"}
	if _, err := ParseBinlogEvents(cols, [][]*string{{s("b.1"), s("4"), s("Query"), s("-1"), s("9"), nil}}); err == nil {
		t.Error("negative server_id accepted")
	}
}

// Without GTIDs a fenced node's own binlog keeps moving while it logs the
// peer's transactions (log_slave_updates). Reading what lies between two
// positions tells those from a write of its own, across a rotation too.
func TestRealOwnWritesBetween(t *testing.T) {
	a, b := mariadbtest.Pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	adm, id := rootAdmin(t, b)
	pos := func() BinlogPos {
		t.Helper()
		p, err := adm.Position(ctx)
		if err != nil || p.Binlog == nil {
			t.Fatalf("position: %+v %v", p, err)
		}
		return *p.Binlog
	}
	peerWrites := func(n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if err := a.Exec(ctx, "INSERT INTO vgtest.t VALUES ()"); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.SyncWith(ctx, a, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Exec(ctx, "SET GLOBAL read_only=OFF", "CREATE TABLE vgtest.t (id INT AUTO_INCREMENT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	peerWrites(1)
	p1 := pos()
	peerWrites(5)
	p2 := pos()
	if p2 == p1 {
		t.Fatal("the standby's binlog did not move with the peer's writes (log_slave_updates?)")
	}
	if own, err := adm.OwnWritesBetween(ctx, id, p1, p2); err != nil || own {
		t.Fatalf("peer's transactions read as own writes: %v %v", own, err)
	}
	if _, err := adm.Q.ExecContext(ctx, "FLUSH BINARY LOGS"); err != nil {
		t.Fatal(err)
	}
	peerWrites(3)
	p3 := pos()
	if p3.File == p1.File {
		t.Fatal("no rotation")
	}
	if own, err := adm.OwnWritesBetween(ctx, id, p1, p3); err != nil || own {
		t.Fatalf("across a rotation: %v %v", own, err)
	}
	// A write of its own (root passes read_only on MariaDB).
	if _, err := adm.Q.ExecContext(ctx, "INSERT INTO vgtest.t VALUES ()"); err != nil {
		t.Fatal(err)
	}
	peerWrites(2)
	p4 := pos()
	if own, err := adm.OwnWritesBetween(ctx, id, p1, p4); err != nil || !own {
		t.Fatalf("own write not found: %v %v", own, err)
	}
	if own, err := adm.OwnWritesBetween(ctx, id, p4, p4); err != nil || own {
		t.Fatalf("empty range: %v %v", own, err)
	}
}

// rootAdmin is an Admin on one root connection to s, closed with the test,
// and the server's id.
func rootAdmin(t *testing.T, s *mariadbtest.Server) (*Admin, uint32) {
	t.Helper()
	ctx := context.Background()
	db, err := s.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	v, id, err := (&Prober{Q: conn, QueryTimeout: time.Second}).Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &Admin{Q: conn, V: v, QueryTimeout: 2 * time.Second}, id
}
