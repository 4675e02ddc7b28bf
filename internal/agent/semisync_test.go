package agent

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/semisync"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// TestRealSemiSyncKeeper runs agentcheck on both nodes of a semi-sync
// pair as notify left them (a promoted writer whose source side is still
// off, a standby whose source side my.cnf turned on) and sees each put
// right, and the standby record the writer with itself acknowledging.
func TestRealSemiSyncKeeper(t *testing.T) {
	args := []string{"--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-slave-enabled=ON", "--rpl-semi-sync-master-timeout=5000"}
	a, b := mariadbtest.Pair(t, mariadbtest.PairOptions{A: mariadbtest.Options{Args: args}, B: mariadbtest.Options{Args: args}})
	ctx := context.Background()
	// a is the writer notify promoted; its source side is off, as after a
	// promotion with the peer away.
	if err := a.Exec(ctx, "SET GLOBAL read_only=OFF", "SET GLOBAL rpl_semi_sync_master_enabled=OFF"); err != nil {
		t.Fatal(err)
	}
	peerOf := func(s *mariadbtest.Server) string {
		return fmt.Sprintf("\n[peer]\nhost = %q\nport = %d\nuser = %q\npassword = %q\n", s.Host, s.Port, mariadbtest.CheckUser, mariadbtest.CheckPassword)
	}
	cfgA := socketConfig(t, a, "")
	cfgB := socketConfig(t, b, "")
	for _, c := range []struct {
		cfg  *config.Config
		peer *mariadbtest.Server
		o    state.Outcome
	}{
		{cfgA, b, state.Outcome{Event: "MASTER", Phase: state.PhaseDone, Role: state.RoleWriter}},
		{cfgB, a, state.Outcome{Event: "BACKUP", Phase: state.PhaseDone, Role: state.RoleStandby}},
	} {
		pc, err := config.Parse([]byte(peerOf(c.peer)))
		if err != nil {
			t.Fatal(err)
		}
		c.cfg.Peer = pc.Peer
		if err := state.Dir(c.cfg.StateDir).WriteOutcome(c.o); err != nil {
			t.Fatal(err)
		}
	}
	srvA, _ := startServer(t, cfgA)
	srvB, _ := startServer(t, cfgB)

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	enabled := func(s *mariadbtest.Server) bool {
		v, err := s.Query(ctx, "SELECT @@global.rpl_semi_sync_master_enabled")
		if err != nil {
			t.Fatal(err)
		}
		return v == "1"
	}
	waitFor("the writer to wait for acknowledgements", func() bool { return enabled(a) })
	waitFor("the standby to stop waiting for acknowledgements", func() bool { return !enabled(b) })

	var s *semisync.Sighting
	waitFor("a sighting of the active writer", func() bool {
		data, err := state.Dir(cfgB.StateDir).PeerSemiSync()
		if err != nil || data == nil {
			return false
		}
		if s, err = semisync.ParseSighting(data); err != nil {
			t.Fatal(err)
		}
		return s.On && s.Clients == 1
	})
	if !s.PeerWritable || !s.Enabled || !s.SelfAcking || s.Timeout != 5*time.Second || s.PeerServerID != a.Opts.ServerID {
		t.Fatalf("sighting %+v", s)
	}
	if c, why := semisync.Promise(true, s, time.Now()); c != state.SemiSyncKept {
		t.Fatalf("the promise from a fresh sighting: %s %s", c, why)
	}
	// The writer keeps no sighting of its read-only peer.
	if data, _ := state.Dir(cfgA.StateDir).PeerSemiSync(); data != nil {
		t.Fatalf("the writer recorded a sighting: %s", data)
	}

	// The metrics and the status document say it, once a poll saw it (a
	// switch made on a poll that was already stale is made again: the
	// counters say at least one).
	metricsHave := func(srv *Server, want ...string) func() bool {
		return func() bool {
			m := string(srv.Metrics.Write(srv.Input(time.Now()), srv.Policy()))
			for _, w := range want {
				if !regexp.MustCompile(w).MatchString(m) {
					return false
				}
			}
			return true
		}
	}
	waitFor("the writer's metrics", metricsHave(srvA, "vipguard_semi_sync_source_active 1", "vipguard_semi_sync_clients 1",
		`vipguard_semi_sync_role_changes_total\{action="enable"\} [1-9]`, `action="disable"\} 0`))
	waitFor("the standby's metrics", metricsHave(srvB, "vipguard_semi_sync_source_enabled 0", "vipguard_semi_sync_replica_on 1",
		`vipguard_semi_sync_role_changes_total\{action="disable"\} [1-9]`, `action="enable"\} 0`, "vipguard_semi_sync_peer_sighting_timestamp_seconds"))
	if st := srvA.NodeStatus(time.Now(), nil); st.MySQL == nil || st.MySQL.SemiSync == nil || !st.MySQL.SemiSync.Active {
		t.Errorf("writer status document: %+v", st.MySQL)
	}

	// The standby's channel stops: it no longer acknowledges, and the
	// sighting says so.
	if err := b.Exec(ctx, "STOP SLAVE IO_THREAD"); err != nil {
		t.Fatal(err)
	}
	waitFor("a sighting without this node acknowledging", func() bool {
		data, _ := state.Dir(cfgB.StateDir).PeerSemiSync()
		s, err := semisync.ParseSighting(data)
		return err == nil && !s.SelfAcking
	})
}
