package probe

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

func TestChannelHealth(t *testing.T) {
	ok := Replica{IORunning: IOYes, SQLRunning: true}
	with := func(f func(*Replica)) Replica { r := ok; f(&r); return r }
	cases := []struct {
		name    string
		r       Replica
		want    Health
		problem string
	}{
		{"streaming", ok, Streaming, ""},
		{"old error, reconnected since", with(func(r *Replica) { r.IOErrno = 1045 }), Streaming, ""},
		{"connecting, no error yet", with(func(r *Replica) { r.IORunning = IOConnecting }), Starting, ""},
		{"preparing (MariaDB registers)", with(func(r *Replica) { r.IORunning = IOPreparing }), Starting, ""},
		{"source down", with(func(r *Replica) { r.IORunning, r.IOErrno = IOConnecting, 2003 }), SourceUnreachable, ""},
		{"gave up on a down source", with(func(r *Replica) { r.IORunning, r.IOErrno = IONo, 2003 }), SourceUnreachable, ""},
		{"register refused by a source shutting down (MariaDB)", with(func(r *Replica) {
			r.IORunning, r.IOErrno = IOConnecting, 1597
			r.IOError = "Master command COM_REGISTER_SLAVE failed: Server shutdown in progress (Errno: 1053)"
		}), SourceUnreachable, ""},
		{"register lost its connection (MySQL)", with(func(r *Replica) {
			r.IORunning, r.IOErrno = IOConnecting, 13120
			r.IOError = "Source command COM_REGISTER_REPLICA failed: Lost connection to MySQL server during query (Errno: 2013)"
		}), SourceUnreachable, ""},
		{"register denied", with(func(r *Replica) {
			r.IORunning, r.IOErrno = IOConnecting, 1597
			r.IOError = "Master command COM_REGISTER_SLAVE failed: Access denied; you need (at least one of) the REPLICATION SLAVE privilege(s) for this operation (Errno: 1227)"
		}), IOFailed, "cannot log in to the source, error 1597"},
		{"register failure without an inner errno", with(func(r *Replica) { r.IORunning, r.IOErrno, r.IOError = IOConnecting, 1597, "failed" }), IOFailed, "error 1597"},
		{"stopped by hand", with(func(r *Replica) { r.IORunning = IONo }), IOStopped, "IO thread is stopped"},
		{"binlog purged", with(func(r *Replica) { r.IORunning, r.IOErrno, r.IOError = IONo, 1236, "Got fatal error 1236" }), IOFailed, "stopped with error 1236: Got fatal error 1236"},
		{"access denied while connecting", with(func(r *Replica) { r.IORunning, r.IOErrno = IOConnecting, 1045 }), IOFailed, "cannot log in"},
		{"sql stopped", with(func(r *Replica) { r.SQLRunning = false }), SQLStopped, "SQL thread is stopped"},
		{"sql error", with(func(r *Replica) {
			r.SQLRunning, r.SQLErrno, r.SQLError, r.Channel = false, 1062, "Duplicate\nentry", "c1"
		}), SQLStopped, `replication "c1" SQL thread stopped with error 1062: Duplicate entry`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if h := tc.r.Health(); h != tc.want {
				t.Fatalf("health %v, want %v", h, tc.want)
			}
			p := tc.r.Problem()
			if (tc.problem == "") != (p == "") || !strings.Contains(p, tc.problem) {
				t.Fatalf("problem %q, want %q", p, tc.problem)
			}
			if tc.want.Broken() != (p != "") {
				t.Fatalf("Broken()=%v but problem %q", tc.want.Broken(), p)
			}
		})
	}
}

func TestFollowsByGTID(t *testing.T) {
	cases := []struct {
		name    string
		r       Replica
		follows bool
		problem string
	}{
		{"MariaDB slave_pos", Replica{UsingGTID: "Slave_Pos"}, true, ""},
		{"MariaDB current_pos", Replica{UsingGTID: "Current_Pos"}, true, ""},
		{"MariaDB file/position", Replica{UsingGTID: "No"}, false, "(Using_Gtid=No) cannot follow a VIP move: CHANGE MASTER TO MASTER_USE_GTID=slave_pos"},
		{"MariaDB file/position, named connection", Replica{UsingGTID: "No", Channel: "dc2"}, false, `replication "dc2" (Using_Gtid=No)`},
		{"MariaDB, other case", Replica{UsingGTID: "no"}, false, "Using_Gtid=no"},
		{"MySQL auto-position", Replica{AutoPosition: "1"}, true, ""},
		{"MySQL file/position", Replica{AutoPosition: "0"}, false, "(Auto_Position=0) cannot follow a VIP move: CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=1"},
		{"neither column read (older data)", Replica{}, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.FollowsByGTID(); got != tc.follows {
				t.Fatalf("FollowsByGTID() = %v, want %v", got, tc.follows)
			}
			p := tc.r.PositioningProblem()
			if (tc.problem == "") != (p == "") || !strings.Contains(p, tc.problem) {
				t.Fatalf("PositioningProblem() = %q, want %q", p, tc.problem)
			}
		})
	}
}

func checkProber(t *testing.T, s *mariadbtest.Server) *Prober {
	t.Helper()
	db, err := Open(Target{Host: s.Host, Port: s.Port, User: mariadbtest.CheckUser, Password: mariadbtest.CheckPassword,
		ConnectTimeout: time.Second, QueryTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &Prober{Q: db, QueryTimeout: 2 * time.Second}
}

// sampleUntil reads the replica's channels every few milliseconds until
// match accepts one, or limit passes. Every read must parse.
func sampleUntil(t *testing.T, p *Prober, limit time.Duration, match func(Replica) bool) (Replica, bool) {
	t.Helper()
	ctx := context.Background()
	v, _, err := p.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		reps, err := p.Replicas(ctx, v)
		if err != nil {
			t.Fatalf("reading replica status while the IO thread reconnects: %v (seen so far %v)", err, seen)
		}
		if len(reps) == 1 {
			seen[string(reps[0].IORunning)]++
			if match(reps[0]) {
				return reps[0], true
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("IO states seen: %v", seen)
	return Replica{}, false
}

// A MariaDB IO thread that has connected but not yet registered reports
// "Preparing". Registering is held back here so the state lasts long
// enough to be read every time; in production it lasts a round trip.
func TestRealPreparingIsStarting(t *testing.T) {
	_, rep, px := mariadbtest.ProxiedReplica(t)
	px.OnCommand(func(cmd byte) mariadbtest.Action {
		if cmd == mariadbtest.ComRegisterSlave {
			return mariadbtest.Action{Delay: 2 * time.Second}
		}
		return mariadbtest.Action{}
	})
	px.Refuse(true) // cut the stream: the IO thread reconnects
	px.Refuse(false)
	r, ok := sampleUntil(t, checkProber(t, rep), 10*time.Second, func(r Replica) bool { return r.IORunning == IOPreparing })
	if !ok {
		t.Fatal("never saw the IO thread in state Preparing")
	}
	if h := r.Health(); h != Starting || h.Broken() {
		t.Fatalf("Preparing classified %v", h)
	}
	// And it does become Yes once registered.
	if _, ok := sampleUntil(t, checkProber(t, rep), 10*time.Second, func(r Replica) bool { return r.IORunning == IOYes }); !ok {
		t.Fatal("IO thread never streamed again")
	}
}

// A source that drops the connection while the replica registers (what a
// restarting source does) leaves an IO error that means "unreachable", not
// "broken".
func TestRealRegisterFailureIsSourceUnreachable(t *testing.T) {
	_, rep, px := mariadbtest.ProxiedReplica(t)
	px.OnCommand(func(cmd byte) mariadbtest.Action {
		return mariadbtest.Action{Drop: cmd == mariadbtest.ComRegisterSlave}
	})
	px.Refuse(true)
	px.Refuse(false)
	r, ok := sampleUntil(t, checkProber(t, rep), 10*time.Second, func(r Replica) bool { return r.IOErrno != 0 })
	if !ok {
		t.Fatal("the IO thread reported no error while registering failed")
	}
	t.Logf("IO thread %s, error %d: %s", r.IORunning, r.IOErrno, r.IOError)
	if h := r.Health(); h != SourceUnreachable {
		t.Fatalf("register failure (%d %q) classified %v, want source unreachable", r.IOErrno, r.IOError, h)
	}
}
