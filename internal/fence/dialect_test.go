package fence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

func TestUnkillableDecision(t *testing.T) {
	e := &Engine{Cfg: config.Default(), Log: slog.New(slog.DiscardHandler)}
	clients := []probe.Thread{{ID: 7, User: "root", Host: "localhost"}, {ID: 8, User: "app", Host: "10.0.0.1:5"}}
	denied := map[uint64]string{7: "not allowed to end this session: the account needs SYSTEM_USER"}
	cases := []struct {
		name    string
		v       probe.Version
		wantErr bool
	}{
		// super_read_only stops a SYSTEM_USER session's writes too.
		{"mysql 8.0 super_read_only", probe.Version{Flavor: probe.MySQL, Major: 8, Minor: 0, Patch: 36}, false},
		{"mysql 8.4", probe.Version{Flavor: probe.MySQL, Major: 8, Minor: 4, Patch: 0}, false},
		// Without super_read_only the session may still write.
		{"mysql 5.7.7", probe.Version{Flavor: probe.MySQL, Major: 5, Minor: 7, Patch: 7}, true},
		{"mariadb 10.11", probe.Version{Flavor: probe.MariaDB, Major: 10, Minor: 11, Patch: 6}, true},
	}
	for _, tc := range cases {
		var rep fenceReport
		err := e.unkillable(tc.v, denied, "local", &rep, clients)
		if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrUnkillable)) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if len(rep.Unkillable) != 1 || rep.Unkillable[0] != "7 root@localhost" {
			t.Errorf("%s: unkillable %q", tc.name, rep.Unkillable)
		}
	}
	// Sessions that ended by themselves meanwhile are no concern.
	var rep fenceReport
	if err := e.unkillable(probe.Version{Flavor: probe.MariaDB, Major: 10, Minor: 11}, denied, "local", &rep, clients[1:]); err != nil {
		t.Errorf("gone session: %v", err)
	}
}

// A fence account without CONNECTION ADMIN cannot end another account's
// session. The fence says so, naming the privilege, and — MariaDB's
// read_only not stopping every account — never reports the node fenced.
func TestRealFenceKillDenied(t *testing.T) {
	a, _ := pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	const weak, weakPass = "weakfencer", "weak-pass"
	if err := a.s.Exec(ctx, "SET SESSION sql_log_bin=0",
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", weak, weakPass),
		fmt.Sprintf("GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR, BINLOG MONITOR, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN ON *.* TO '%s'@'%%'", weak)); err != nil {
		t.Fatal(err)
	}
	a.cfg.MySQL.Host, a.cfg.MySQL.Port, a.cfg.MySQL.User, a.cfg.MySQL.Password = a.s.Host, a.s.Port, weak, weakPass
	a.cfg.Notify.FenceTimeout.Duration = 3 * time.Second
	idleSession(t, a.s)
	err := a.event(ctx, "BACKUP")
	if !errors.Is(err, ErrUnkillable) || !strings.Contains(err.Error(), "CONNECTION ADMIN") {
		t.Fatalf("fence with an unkillable session: %v, want ErrUnkillable naming CONNECTION ADMIN", err)
	}
	if !a.readOnly(t) {
		t.Fatal("read_only is off")
	}
	o := a.outcome(t)
	if o.Phase != "failed" || !o.Unfit || !strings.Contains(o.Reason, "CONNECTION ADMIN") {
		t.Fatalf("outcome %+v", o)
	}
}

// The old writer dies while it sends a large transaction: the replica's
// relay log ends in part of it, which can never be applied. The gate must
// still be met once everything complete is applied, or reliability first
// would never promote after such a crash.
func TestRealGateMetWithPartialTransaction(t *testing.T) {
	src, rep, px := mariadbtest.ProxiedReplica(t)
	ctx := context.Background()
	if err := src.Exec(ctx, "SET GLOBAL read_only=OFF",
		"CREATE TABLE vgtest.big (id INT PRIMARY KEY, pad VARCHAR(1000))",
		"INSERT INTO vgtest.big VALUES (0, 'complete')"); err != nil {
		t.Fatal(err)
	}
	if err := waitApplied(ctx, rep, "SELECT COUNT(*) FROM vgtest.big", "1"); err != nil {
		t.Fatal(err)
	}
	// About 2 MB of row events in one transaction; 256 KiB of it arrives.
	px.CutAfter(256 << 10)
	if err := src.Exec(ctx, "INSERT INTO vgtest.big SELECT seq, REPEAT('x', 1000) FROM vgtest.seq_1_to_2000"); err != nil {
		t.Fatal(err)
	}
	n := newNode(t, "rep", rep, src)
	n.cfg.MySQL.QueryTimeout.Duration = 2 * time.Second
	local, err := n.eng.openLocal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer local.close()
	a, selfID := local.admin, local.serverID
	var why string
	var reps []probe.Replica
	deadline := time.Now().Add(15 * time.Second)
	met := false
	for !met && time.Now().Before(deadline) {
		met, why, err = n.eng.caughtUp(ctx, a, selfID, nil, 300*time.Millisecond, nil)
		if err != nil {
			t.Fatal(err)
		}
		reps, _ = a.Replicas(ctx)
	}
	if len(reps) != 1 || reps[0].ReadSourceLogPos <= reps[0].ExecSourceLogPos {
		t.Fatalf("no partial transaction in the relay log: %+v", reps)
	}
	if !met {
		t.Fatalf("gate never met with a partial transaction at the end of the relay log: %s", why)
	}
	if got, _ := rep.Query(ctx, "SELECT COUNT(*) FROM vgtest.big"); got != "1" {
		t.Fatalf("replica has %s rows, want just the complete transaction's 1", got)
	}
}

// waitApplied polls q on s until it returns want.
func waitApplied(ctx context.Context, s *mariadbtest.Server, q, want string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := s.Query(ctx, q)
		if err == nil && got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%q gave %q (%v), want %q", q, got, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
