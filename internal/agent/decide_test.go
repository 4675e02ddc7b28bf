package agent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
)

func testPolicy() Policy {
	c := config.Default()
	c.Agent.MaxLag.Duration = 60 * time.Second
	return PolicyFrom(c)
}

func i64(n int64) *int64 { return &n }

func replica(io probe.IOState, sql bool, lag *int64) probe.Replica {
	return probe.Replica{SourceHost: "peer", IORunning: io, SQLRunning: sql, SecondsBehind: lag}
}

var promoted = &state.Outcome{Event: "MASTER", Phase: "done", Role: "writer"}

func TestDecide(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	writable := &probe.Snapshot{}
	standby := func(r ...probe.Replica) *probe.Snapshot { return &probe.Snapshot{ReadOnly: true, Replicas: r} }
	fresh := func(s *probe.Snapshot) *State { return &State{Snapshot: s, At: now.Add(-200 * time.Millisecond)} }
	tests := []struct {
		name   string
		role   Role
		in     Input
		maxLag time.Duration
		want   string // agent line without description
		reason string
	}{
		{"writer promoted", RoleWriter, Input{Poll: fresh(writable), Outcome: promoted}, 0, "up 100%", "writer"},
		{"writer not promoted", RoleWriter, Input{Poll: fresh(writable)}, 0, "down", "has not promoted"},
		{"writer promotion running", RoleWriter, Input{Poll: fresh(writable), Outcome: &state.Outcome{Event: "MASTER", Phase: "running", Role: "writer"}}, 0, "down", "not a completed promotion"},
		{"writer promotion failed", RoleWriter, Input{Poll: fresh(writable), Outcome: &state.Outcome{Event: "MASTER", Phase: "failed", Role: "standby"}}, 0, "down", "not a completed promotion"},
		{"writer unfit outcome", RoleWriter, Input{Poll: fresh(writable), Outcome: &state.Outcome{Event: "MASTER", Phase: "done", Role: "writer", Unfit: true, Reason: "gate"}}, 0, "down", "unfit"},
		{"writer outcome unreadable", RoleWriter, Input{Poll: fresh(writable), OutcomeErr: errors.New("corrupt")}, 0, "down", "cannot read notify"},
		{"writer on read-only node", RoleWriter, Input{Poll: fresh(standby(replica("Yes", true, i64(0))))}, 0, "down", "read_only=ON"},
		{"writer stale", RoleWriter, Input{Poll: &State{Snapshot: writable, At: now.Add(-4 * time.Second)}, Outcome: promoted}, 0, "down", "stale"},
		{"writer never polled", RoleWriter, Input{Outcome: promoted}, 0, "down", "no poll"},
		{"writer poll error", RoleWriter, Input{Poll: &State{Err: errors.New("dial unix: connection refused"), At: now}, Outcome: promoted}, 0, "down", "does not answer"},
		{"writer the fast path finds silent", RoleWriter, Input{Poll: fresh(writable), Outcome: promoted, Silent: "no answer for 7 polls"}, 0, "down", "mysqld silent (fast path): no answer for 7 polls"},
		{"reader the fast path finds silent", RoleReader, Input{Poll: fresh(standby(replica("Yes", true, i64(0)))), Silent: "not running"}, 0, "down", "mysqld silent"},
		{"liveness ignores the fast path", RoleLiveness, Input{Poll: fresh(writable), LoopAlive: true, Silent: "not running"}, 0, "up", "poll loop alive"},
		{"writer maint drain", RoleWriter, Input{Poll: fresh(writable), Outcome: promoted, Maintenance: state.Maintenance{On: true, Reason: "upgrade"}}, 0, "up 0%", "maintenance mode is on (upgrade)"},
		{"reader in sync", RoleReader, Input{Poll: fresh(standby(replica("Yes", true, i64(0))))}, 0, "up 100%", "lag 0s"},
		{"reader lag at full weight", RoleReader, Input{Poll: fresh(standby(replica("Yes", true, i64(1))))}, 0, "up 100%", "lag 1s"},
		{"reader lagging", RoleReader, Input{Poll: fresh(standby(replica("Yes", true, i64(30))))}, 0, "up 56%", "lag 30s"}, // 100 - 90*(29/59),
		{"reader at limit", RoleReader, Input{Poll: fresh(standby(replica("Yes", true, i64(60))))}, 0, "up 10%", "lag 1m0s"},
		{"reader over limit", RoleReader, Input{Poll: fresh(standby(replica("Yes", true, i64(61))))}, 0, "down", "above max_lag 1m0s"},
		{"reader request limit", RoleReader, Input{Poll: fresh(standby(replica("Yes", true, i64(6))))}, 5 * time.Second, "down", "above max_lag 5s"},
		{"reader sql stopped", RoleReader, Input{Poll: fresh(standby(replica("Yes", false, nil)))}, 0, "down", "SQL thread is stopped"},
		{"reader io connecting", RoleReader, Input{Poll: fresh(standby(replica("Connecting", true, nil)))}, 0, "down", "IO thread is Connecting (starting"},
		{"reader io preparing", RoleReader, Input{Poll: fresh(standby(replica(probe.IOPreparing, true, nil)))}, 0, "down", "IO thread is Preparing (starting"},
		{"reader no replication", RoleReader, Input{Poll: fresh(standby())}, 0, "down", "not replicating"},
		{"reader on writer", RoleReader, Input{Poll: fresh(writable), Outcome: promoted}, 0, "up 100%", "writer"},
		{"reader maint", RoleReader, Input{Poll: fresh(standby(replica("Yes", true, i64(0)))), Maintenance: state.Maintenance{On: true}}, 0, "up 0%", "maintenance"},
		{"reader maint and broken", RoleReader, Input{Poll: fresh(standby(replica("Yes", false, nil))), Maintenance: state.Maintenance{On: true}}, 0, "down", "maintenance mode is on; and"},
		{"read-only on writer", RoleReadOnly, Input{Poll: fresh(writable), Outcome: promoted}, 0, "down", "writable"},
		{"read-only on standby", RoleReadOnly, Input{Poll: fresh(standby(replica("Yes", true, i64(0))))}, 0, "up 100%", "replicating"},
		{"health writer", RoleHealth, Input{Poll: fresh(writable)}, 0, "up", "writer"},
		{"health maint", RoleHealth, Input{Poll: fresh(writable), Maintenance: state.Maintenance{On: true}}, 0, "down", "maintenance"},
		{"readiness", RoleReadiness, Input{Poll: fresh(writable)}, 0, "up", "last poll ok"},
		{"readiness stale", RoleReadiness, Input{Poll: &State{Snapshot: writable, At: now.Add(-time.Minute)}}, 0, "down", "stale"},
		{"liveness", RoleLiveness, Input{LoopAlive: true}, 0, "up", "alive"},
		{"liveness stalled", RoleLiveness, Input{}, 0, "down", "poll loop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Now = now
			a := Decide(testPolicy(), tt.role, tt.in, tt.maxLag)
			line := a.AgentLine()
			head, _, _ := strings.Cut(strings.TrimSuffix(line, "\n"), " #")
			if head != tt.want || !strings.Contains(a.Reason, tt.reason) {
				t.Fatalf("got %q (reason %q), want %q with reason containing %q", line, a.Reason, tt.want, tt.reason)
			}
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
				t.Fatalf("agent reply %q is not exactly one line", line)
			}
		})
	}
}

func TestMaintAnswer(t *testing.T) {
	pol := testPolicy()
	pol.Maintenance = "maint"
	now := time.Now()
	in := Input{Poll: &State{Snapshot: &probe.Snapshot{}, At: now}, Now: now, Outcome: promoted, Maintenance: state.Maintenance{On: true}}
	a := Decide(pol, RoleWriter, in, 0)
	if a.Verdict != Maint || !strings.HasPrefix(a.AgentLine(), "down #maint") || a.HTTPStatus() != 503 {
		t.Fatalf("maintenance=maint: got %v %q %d", a.Verdict, a.AgentLine(), a.HTTPStatus())
	}
	pol.Maintenance = "drain"
	a = Decide(pol, RoleWriter, in, 0)
	if a.Verdict != Drain || a.HTTPStatus() != 404 {
		t.Fatalf("maintenance=drain: got %v %d", a.Verdict, a.HTTPStatus())
	}
}

// TestNeverAdminWords holds the admin-state policy: no answer ever carries
// ready, drain or maint as a word HAProxy would act on.
func TestNeverAdminWords(t *testing.T) {
	now := time.Now()
	for _, on := range []bool{false, true} {
		for _, mode := range []string{"drain", "maint"} {
			for _, s := range []*probe.Snapshot{{}, {ReadOnly: true, Replicas: []probe.Replica{replica("Yes", true, i64(3))}}} {
				for r := RoleWriter; r < numRoles; r++ {
					pol := testPolicy()
					pol.Maintenance = mode
					in := Input{Poll: &State{Snapshot: s, At: now}, Now: now, Outcome: promoted, LoopAlive: true, Maintenance: state.Maintenance{On: on, Reason: "ready drain maint"}}
					line := Decide(pol, r, in, 0).AgentLine()
					head, _, _ := strings.Cut(line, "#")
					for _, w := range strings.FieldsFunc(head, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' || r == '\n' }) {
						switch w {
						case "ready", "drain", "maint":
							t.Fatalf("%v (maint=%v %s): reply %q carries admin word %q", r, on, mode, line, w)
						}
					}
				}
			}
		}
	}
}

func TestWeightFalls(t *testing.T) {
	pol := testPolicy()
	prev := 101
	for lag := time.Duration(0); lag <= pol.MaxLag; lag += time.Second {
		w := weightFor(pol, lag, pol.MaxLag)
		if w > prev || w < pol.MinWeight || w > 100 {
			t.Fatalf("lag %s: weight %d after %d", lag, w, prev)
		}
		prev = w
	}
	if prev != pol.MinWeight {
		t.Fatalf("weight at max_lag is %d, want min_weight %d", prev, pol.MinWeight)
	}
}

// A read replica behind the pair (no [peer]) that replicates by
// file/position cannot follow the VIP to the new writer: its reader answer
// says so, and stays up while it serves correct reads.
func TestDecideReplicaPositioning(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	channel := func(usingGTID, autoPos string, f ...func(*probe.Replica)) probe.Replica {
		r := replica("Yes", true, i64(0))
		r.SourceHost, r.UsingGTID, r.AutoPosition = "192.0.2.100", usingGTID, autoPos
		for _, f := range f {
			f(&r)
		}
		return r
	}
	failed := func(r *probe.Replica) {
		r.IORunning, r.IOErrno, r.IOError, r.SecondsBehind = probe.IONo, 1236, "Could not find first log file name in binary log index file", nil
	}
	const mariaWarn = "; WARNING: file/position replication (Using_Gtid=No) cannot follow a VIP move: CHANGE MASTER TO MASTER_USE_GTID=slave_pos"
	tests := []struct {
		name   string
		peer   bool
		role   Role
		ch     probe.Replica
		want   string // agent line
		reason string // whole reason, or a prefix when it ends in "..."
	}{
		{"replica by GTID", false, RoleReader, channel("Slave_Pos", ""), "up 100%", "reader: replicating, lag 0s"},
		{"replica by GTID, current_pos", false, RoleReader, channel("Current_Pos", ""), "up 100%", "reader: replicating, lag 0s"},
		{"replica by file/position (MariaDB)", false, RoleReader, channel("No", ""), "up 100%", "reader: replicating, lag 0s" + mariaWarn},
		{"replica by file/position (MySQL)", false, RoleReader, channel("", "0"), "up 100%",
			"reader: replicating, lag 0s; WARNING: file/position replication (Auto_Position=0) cannot follow a VIP move: CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=1"},
		{"replica with auto-position (MySQL)", false, RoleReader, channel("", "1"), "up 100%", "reader: replicating, lag 0s"},
		{"positioning not read", false, RoleReader, channel("", ""), "up 100%", "reader: replicating, lag 0s"},
		{"read-only role too", false, RoleReadOnly, channel("No", ""), "up 100%", "reader: replicating, lag 0s" + mariaWarn},
		{"broken after the move: down, and why", false, RoleReader, channel("No", "", failed), "down",
			"replication IO thread stopped with error 1236: Could not find first log file name in binary log index file" + mariaWarn},
		{"pair member by file/position: doctor's concern", true, RoleReader, channel("No", ""), "up 100%", "reader: replicating, lag 0s"},
		{"writer role on a replica", false, RoleWriter, channel("No", ""), "down", "read_only=ON: not the writer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy()
			p.Peer = tt.peer
			in := Input{Poll: &State{Snapshot: &probe.Snapshot{ReadOnly: true, Replicas: []probe.Replica{tt.ch}}, At: now}, Now: now}
			a := Decide(p, tt.role, in, 0)
			head, _, _ := strings.Cut(strings.TrimSuffix(a.AgentLine(), "\n"), " #")
			if head != tt.want || a.Reason != tt.reason {
				t.Fatalf("got %q, reason %q\nwant %q, reason %q", head, a.Reason, tt.want, tt.reason)
			}
			// HAProxy's agent_desc carries the whole warning, the
			// statement that mends it included.
			if strings.Contains(tt.reason, "WARNING") && tt.want != "down" && !strings.Contains(a.AgentLine(), tt.reason) {
				t.Fatalf("agent line %q cuts the reason %q", a.AgentLine(), tt.reason)
			}
		})
	}
}

// PolicyFrom tells a pair member from a replica behind it by [peer].
func TestPolicyPeer(t *testing.T) {
	c := config.Default()
	if PolicyFrom(c).Peer {
		t.Fatal("no [peer] host: Policy.Peer is true")
	}
	c.Peer.Host = "192.0.2.12"
	if !PolicyFrom(c).Peer {
		t.Fatal("[peer] host set: Policy.Peer is false")
	}
}
