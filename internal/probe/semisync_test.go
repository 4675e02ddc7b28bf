package probe

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// nameValues turns a recorded Variable_name/Value result into rows.
func nameValues(t *testing.T, file string) [][2]string {
	t.Helper()
	cols, rows := readVertical(t, file)
	if len(cols) != 2 || cols[0] != "Variable_name" || cols[1] != "Value" {
		t.Fatalf("%s: columns %q", file, cols)
	}
	var out [][2]string
	for _, r := range rows {
		out = append(out, [2]string{*r[0], *r[1]})
	}
	return out
}

func TestParseSemiSyncRecordedMySQL(t *testing.T) {
	cases := []struct {
		name, vars, status string
		want               SemiSync
	}{
		{"8.0.26+ writer, active", "mysql-8.0-semi-sync-source-replica-variables.txt", "mysql-8.0-semi-sync-source-status-active.txt",
			SemiSync{Available: true, Source: true, NewNames: true, SourceEnabled: true, SourceOn: true, Clients: 1, WaitFor: 1, WaitNoReplica: true,
				Timeout: 10 * time.Second, Acked: 1206, Replica: true, ReplicaEnabled: true}},
		{"8.0.26+ writer, fallen back", "mysql-8.0-semi-sync-source-replica-variables.txt", "mysql-8.0-semi-sync-source-status-async-fallback.txt",
			SemiSync{Available: true, Source: true, NewNames: true, SourceEnabled: true, WaitFor: 1, WaitNoReplica: true,
				Timeout: 10 * time.Second, FallBacks: 1, Acked: 1206, Unacked: 37, Replica: true, ReplicaEnabled: true}},
		{"8.0.26+ standby", "mysql-8.0-semi-sync-replica-variables.txt", "mysql-8.0-semi-sync-replica-status.txt",
			SemiSync{Available: true, Source: true, NewNames: true, WaitFor: 1, WaitNoReplica: true,
				Timeout: 10 * time.Second, Replica: true, ReplicaEnabled: true, ReplicaOn: true}},
		{"5.7 writer, old names", "mysql-5.7-semi-sync-master-variables.txt", "mysql-5.7-semi-sync-master-status.txt",
			SemiSync{Available: true, Source: true, SourceEnabled: true, SourceOn: true, Clients: 1, WaitFor: 1, WaitNoReplica: true,
				Timeout: 10 * time.Second, Replica: true, ReplicaEnabled: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSemiSync(nameValues(t, tc.vars), nameValues(t, tc.status))
			if err != nil {
				t.Fatal(err)
			}
			// Counters the fixtures chose freely are compared where the
			// test names them; the rest must match exactly.
			got.Acked, got.Waiting = tc.want.Acked, 0
			if got.Acked != tc.want.Acked || got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	only, err := ParseSemiSync(nameValues(t, "mysql-8.0-semi-sync-source-only-variables.txt"), nil)
	if err != nil || !only.Source || only.Replica || only.SourceEnabledVar() != "rpl_semi_sync_source_enabled" {
		t.Fatalf("source plugin only: %+v %v", only, err)
	}
}

func TestParseSemiSync(t *testing.T) {
	none, err := ParseSemiSync(nil, nil)
	if err != nil || none.Available || none.InUse() || none.Describe() != "semi-sync not available" {
		t.Fatalf("no rows: %+v %v", none, err)
	}
	old, _ := ParseSemiSync([][2]string{{"rpl_semi_sync_master_enabled", "ON"}, {"rpl_semi_sync_master_timeout", "1500"}}, nil)
	if old.NewNames || old.SourceEnabledVar() != "rpl_semi_sync_master_enabled" || old.Timeout != 1500*time.Millisecond {
		t.Fatalf("old names: %+v", old)
	}
	// Both spellings of one fact: the new one wins, whatever the order.
	both, _ := ParseSemiSync([][2]string{{"rpl_semi_sync_source_timeout", "2000"}, {"rpl_semi_sync_master_timeout", "1000"}}, nil)
	if both.Timeout != 2*time.Second {
		t.Fatalf("both spellings: %+v", both)
	}
	for _, bad := range [][2]string{
		{"rpl_semi_sync_master_enabled", "MAYBE"},
		{"rpl_semi_sync_master_timeout", "-1"},
		{"rpl_semi_sync_master_timeout", "10s"},
	} {
		if _, err := ParseSemiSync([][2]string{bad}, nil); err == nil || !strings.Contains(err.Error(), bad[1]) {
			t.Errorf("%v: err %v", bad, err)
		}
	}
	// Names outside semi-sync are ignored, not errors.
	if s, err := ParseSemiSync([][2]string{{"rpl_semi_sync_other_thing", "x"}, {"Rpl_semi_syncx", "1"}}, nil); err != nil || s.Available {
		t.Fatalf("unrelated names: %+v %v", s, err)
	}
}

func FuzzParseSemiSync(f *testing.F) {
	f.Add("rpl_semi_sync_master_enabled", "ON", "Rpl_semi_sync_master_clients", "1")
	f.Add("rpl_semi_sync_source_timeout", "18446744073709551615", "Rpl_semi_sync_source_no_tx", "7")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		s, err := ParseSemiSync([][2]string{{k1, v1}}, [][2]string{{k2, v2}})
		if err != nil {
			return
		}
		_ = s.Describe()
		if s.Timeout < 0 || s.Clients < 0 || s.WaitFor < 0 {
			t.Fatalf("negative values from %q=%q %q=%q: %+v", k1, v1, k2, v2, s)
		}
	})
}

// TestRealSemiSync reads a real MariaDB pair with semi-sync enabled on
// both sides, switches the source side by role, and sees a commit wait
// for the acknowledgement only while it is on.
func TestRealSemiSync(t *testing.T) {
	args := []string{"--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-slave-enabled=ON", "--rpl-semi-sync-master-timeout=3000"}
	a, b := mariadbtest.Pair(t, mariadbtest.PairOptions{A: mariadbtest.Options{Args: args}, B: mariadbtest.Options{Args: args}})
	ctx := context.Background()
	read := func(s *mariadbtest.Server) SemiSync {
		t.Helper()
		db, err := s.RootDB()
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		ss, err := (&Prober{Q: db, QueryTimeout: 2 * time.Second}).SemiSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ss
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("b to acknowledge a", func() bool { s := read(a); return s.Active() })
	sa := read(a)
	if !sa.Available || !sa.Source || !sa.Replica || sa.NewNames || !sa.InUse() || sa.Clients != 1 || sa.WaitFor != 1 ||
		sa.Timeout != 3*time.Second || !sa.WaitNoReplica || !sa.ReplicaEnabled {
		t.Fatalf("a: %+v", sa)
	}
	if err := a.Exec(ctx, "SET GLOBAL read_only=OFF", "CREATE TABLE vgtest.ss (id INT PRIMARY KEY)", "INSERT INTO vgtest.ss VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if s := read(a); s.Acked == 0 || s.Unacked != 0 {
		t.Fatalf("after an acknowledged commit: %+v", s)
	}

	adm, _ := rootAdmin(t, a)

	// The role-conditioned switch does nothing against the role.
	if err := adm.SetSemiSyncSourceByRole(ctx, sa, false); err != nil {
		t.Fatal(err)
	}
	if s := read(a); !s.SourceEnabled {
		t.Fatal("a writable server's source side was switched off by the standby rule")
	}

	// A commit with nobody to acknowledge it waits; switching the source
	// side off releases it at once.
	if err := b.Exec(ctx, "STOP SLAVE IO_THREAD"); err != nil {
		t.Fatal(err)
	}
	waitFor("a to lose its client", func() bool { return read(a).Clients == 0 })
	done := make(chan error, 1)
	go func() { done <- a.Exec(ctx, "INSERT INTO vgtest.ss VALUES (2)") }()
	waitFor("the commit to wait for an acknowledgement", func() bool { return read(a).Waiting == 1 })
	if err := adm.SetSemiSyncSource(ctx, sa, false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting commit was not released by switching the source side off")
	}
	if s := read(a); s.SourceEnabled || s.Active() {
		t.Fatalf("after switching off: %+v", s)
	}
	// Clients are counted while the source side is off: the writer sees
	// the replica that would acknowledge it.
	if err := b.Exec(ctx, "START SLAVE IO_THREAD"); err != nil {
		t.Fatal(err)
	}
	waitFor("the replica to come back", func() bool { return read(a).Clients == 1 })
	if err := adm.SetSemiSyncSourceByRole(ctx, sa, true); err != nil {
		t.Fatal(err)
	}
	waitFor("semi-sync active again", func() bool { return read(a).Active() })
	// Read-only: the writer rule does nothing.
	if err := a.Exec(ctx, "SET GLOBAL read_only=ON", "SET GLOBAL rpl_semi_sync_master_enabled=OFF"); err != nil {
		t.Fatal(err)
	}
	if err := adm.SetSemiSyncSourceByRole(ctx, sa, true); err != nil {
		t.Fatal(err)
	}
	if s := read(a); s.SourceEnabled {
		t.Fatal("a read-only server's source side was switched on by the writer rule")
	}
}
