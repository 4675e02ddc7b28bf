package fence

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

func TestRelayApplied(t *testing.T) {
	const u = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	idle := "Slave has read all relay log; waiting for more updates"
	caught := probe.Replica{IORunning: probe.IOYes, SQLRunning: true, SourceLogFile: "b.1", ReadSourceLogPos: 900,
		RelaySourceLogFile: "b.1", ExecSourceLogPos: 900, SQLState: idle}
	with := func(f func(*probe.Replica)) probe.Replica { r := caught; f(&r); return r }
	partial := func(r *probe.Replica) { r.IORunning, r.IOErrno, r.ExecSourceLogPos = probe.IOConnecting, 2003, 700 }
	cases := []struct {
		name        string
		before, now probe.Replica
		met         bool
		why         string
	}{
		{"caught up", caught, caught, true, ""},
		{"sql stopped", caught, with(func(r *probe.Replica) { r.SQLRunning, r.SQLErrno = false, 1062 }), false, "SQL thread stopped (1062"},
		{"behind while streaming", caught, with(func(r *probe.Replica) { r.ExecSourceLogPos = 700 }), false, "applied b.1:700 of received b.1:900"},
		{"partial transaction, source gone, applier idle", with(partial), with(partial), true, "never finished sending"},
		{"source gone but still applying", with(partial), with(func(r *probe.Replica) { partial(r); r.ExecSourceLogPos = 800 }), false, "applied b.1:800"},
		{"source gone, applier busy", with(func(r *probe.Replica) { partial(r); r.SQLState = "Executing event" }), with(partial), false, "applied b.1:700"},
		{"source back between readings", with(partial), with(func(r *probe.Replica) { r.ExecSourceLogPos = 700 }), false, "applied b.1:700"},
		{"gtid: retrieved covered", caught, with(func(r *probe.Replica) {
			r.RetrievedSet, r.ExecutedSet, r.ExecSourceLogPos = u+":1-10", u+":1-10,\n8a94f357-aab4-11df-86ab-c80aa9429562:1-3", 5
		}), true, ""},
		// The retrieved set holds only whole transactions: a gap is real
		// work left, never a partial one, so idleness is no excuse.
		{"gtid: retrieved not covered, idle applier", with(func(r *probe.Replica) { partial(r); r.RetrievedSet, r.ExecutedSet = u+":1-12", u+":1-10" }),
			with(func(r *probe.Replica) { partial(r); r.RetrievedSet, r.ExecutedSet = u+":1-12", u+":1-10" }), false, "received but not applied " + u + ":11-12"},
		{"gtid: unparsable", caught, with(func(r *probe.Replica) { r.RetrievedSet = "junk" }), false, "retrieved GTID set"},
	}
	for _, tc := range cases {
		met, why := relayApplied(tc.before, tc.now)
		if met != tc.met || !strings.Contains(why, tc.why) || (tc.why == "" && why != "") {
			t.Errorf("%s: met=%v why=%q, want %v %q", tc.name, met, why, tc.met, tc.why)
		}
	}
}

// GTID_ONLY channels show their coordinates as INVALID/0 after a restart;
// equal on both sides, they must not read as caught up.
func TestRelayAppliedGTIDOnlyRecorded(t *testing.T) {
	load := func(name string) probe.Replica {
		t.Helper()
		cols, rows, err := mariadbtest.ReadVertical(filepath.Join("..", "probe", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		reps, err := probe.ParseReplicaStatus(cols, rows)
		if err != nil || len(reps) != 1 {
			t.Fatalf("%s: %v %v", name, reps, err)
		}
		return reps[0]
	}
	behind := load("mysql-8.0-show-replica-status-gtid-only-behind.txt")
	if behind.SourceLogFile != "INVALID" || !behind.CaughtUpFilePos() {
		t.Fatalf("fixture no longer shows the trap: %+v", behind)
	}
	// As recorded the threads are not started yet: nothing can be applied.
	if met, why := relayApplied(behind, behind); met || !strings.Contains(why, "SQL thread stopped") {
		t.Fatalf("recorded, SQL thread stopped: met=%v %q", met, why)
	}
	behind.SQLRunning = true
	if met, why := relayApplied(behind, behind); met || !strings.Contains(why, ":1207-1250") {
		t.Fatalf("behind: met=%v %q", met, why)
	}
	caught := load("mysql-8.0-show-replica-status-gtid-only.txt")
	caught.SQLRunning = true
	if met, why := relayApplied(caught, caught); !met {
		t.Fatalf("caught up: %q", why)
	}
}
