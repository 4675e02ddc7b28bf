package fence

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
)

func TestPromotionRules(t *testing.T) {
	reached := &check.Witness{Source: witness.Configured, Reached: "192.0.2.1:9"}
	silent := &check.Witness{Source: witness.FromProxies, Failures: []string{"192.0.2.20:9: no answer within 300ms"}}
	unreadable := &check.Witness{Err: errors.New("learned witnesses unreadable")}
	none := &check.Witness{None: true}
	peerDown := errors.New("dial tcp 192.0.2.12:3306: connect: no route to host")
	cases := []struct {
		name   string
		v      verdict
		stop   bool
		err    error
		unfit  bool
		reason string // in the outcome when stopped, else in the warning
	}{
		{"maintenance off", maintenanceRule("MASTER", state.Maintenance{}, nil), false, nil, false, ""},
		{"maintenance on", maintenanceRule("MASTER", state.Maintenance{On: true}, nil), true, ErrRefused, false, "maintenance mode is on"},
		{"maintenance unreadable", maintenanceRule("MASTER", state.Maintenance{}, errors.New("EACCES")), true, ErrRefused, false, "maintenance flag unreadable (EACCES)"},
		{"peer fenced", peerRule("MASTER", peerFinding{Reached: true}, nil), false, nil, false, ""},
		// Two writers are worse than none, whatever the policy.
		{"peer answers, fence failed", peerRule("MASTER", peerFinding{Reached: true, Err: errors.New("KILL refused")}, nil), true, ErrRefused, true, "peer answers but could not be fenced: KILL refused"},
		{"peer silent, witness answers", peerRule("MASTER", peerFinding{Err: peerDown}, reached), false, nil, false, ""},
		{"peer silent, no witness answers", peerRule("MASTER", peerFinding{Err: peerDown}, silent), true, ErrRefused, true, "this node is the one cut off (no learned witness answered (192.0.2.20:9"},
		{"peer silent, witnesses unknown", peerRule("MASTER", peerFinding{Err: peerDown}, unreadable), true, ErrRefused, true, "learned witnesses unreadable"},
		{"peer silent, no witness at all", peerRule("MASTER", peerFinding{Err: peerDown}, none), false, nil, false, "PROMOTING WITHOUT A WITNESS"},
		{"no peer configured", peerRule("MASTER", peerFinding{Err: errNoPeer}, reached), false, nil, false, ""},
		{"gate met", gateRule("MASTER", true, "", config.PolicyReliability), false, nil, false, ""},
		{"gate not met, reliability", gateRule("MASTER", false, "domain 1 at 5 of 9", config.PolicyReliability), true, ErrGateNotMet, true, "promotion gate not met: domain 1 at 5 of 9"},
		{"gate not met, availability", gateRule("MASTER", false, "domain 1 at 5 of 9", config.PolicyAvailability), false, nil, false, "OPENING WRITES WITHOUT CATCH-UP"},
		{"semi-sync: async pair", semiSyncRule("MASTER", state.SemiSyncAsync, "", config.PolicyReliability), false, nil, false, ""},
		{"semi-sync: kept", semiSyncRule("MASTER", state.SemiSyncKept, "active", config.PolicyReliability), false, nil, false, ""},
		{"semi-sync: fenced", semiSyncRule("MASTER", state.SemiSyncFenced, "", config.PolicyReliability), false, nil, false, ""},
		{"semi-sync: fallen back, reliability", semiSyncRule("MASTER", state.SemiSyncFallenBack, "had fallen back", config.PolicyReliability), true, ErrRefused, true, "semi-sync cannot vouch for the old writer's acknowledged writes: had fallen back"},
		{"semi-sync: unknown, reliability", semiSyncRule("MASTER", state.SemiSyncUnknown, "no sighting", config.PolicyReliability), true, ErrRefused, true, "cannot vouch"},
		{"semi-sync: fallen back, availability", semiSyncRule("MASTER", state.SemiSyncFallenBack, "had fallen back", config.PolicyAvailability), false, nil, false, "OPENING WRITES ALTHOUGH ACKNOWLEDGED WRITES MAY BE MISSING (availability first): had fallen back"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			if v.Stop != tc.stop || !errors.Is(v.Err, tc.err) || (tc.err == nil && v.Err != nil) {
				t.Fatalf("stop=%v err=%v, want stop=%v err=%v", v.Stop, v.Err, tc.stop, tc.err)
			}
			if !v.Stop {
				if !strings.Contains(v.Warn, tc.reason) || (tc.reason == "" && v.Warn != "") {
					t.Fatalf("warning %q, want %q", v.Warn, tc.reason)
				}
				return
			}
			o := v.Outcome
			if o.Event != "MASTER" || o.Phase != state.PhaseFailed || o.Role != state.RoleStandby || o.Unfit != tc.unfit || !strings.Contains(o.Reason, tc.reason) {
				t.Fatalf("outcome %+v, want unfit=%v reason %q", o, tc.unfit, tc.reason)
			}
		})
	}
}

func TestPromotionOutcomes(t *testing.T) {
	if o := openedOutcome("MASTER", true, "", state.SemiSyncKept); !o.Promoted() || o.Reason != "" || o.SemiSync != state.SemiSyncKept {
		t.Errorf("caught up: %+v", o)
	}
	if o := openedOutcome("MASTER", false, "behind", state.SemiSyncFenced); !o.Promoted() || !strings.Contains(o.Reason, "without catch-up (availability first): behind") {
		t.Errorf("availability: %+v", o)
	}
	if o := openedOutcome("MASTER", true, "", state.SemiSyncFallenBack); !o.Promoted() || !strings.Contains(o.Reason, "could not vouch") || o.SemiSync != state.SemiSyncFallenBack {
		t.Errorf("availability, semi-sync fallen back: %+v", o)
	}
	if o, err := interruptedOutcome("MASTER"); o.Promoted() || o.Unfit || !errors.Is(err, ErrInterrupted) {
		t.Errorf("interrupted: %+v %v", o, err)
	}
	if o, err := preemptedOutcome("MASTER", errors.New("killed")); o.Promoted() || !errors.Is(err, ErrPreempted) {
		t.Errorf("preempted: %+v %v", o, err)
	}
	if o, err := openFailedOutcome("MASTER", errors.New("1227")); o.Promoted() || !o.Unfit || !strings.Contains(err.Error(), "opening writes: 1227") {
		t.Errorf("open failed: %+v %v", o, err)
	}
}

func TestBudgets(t *testing.T) {
	n := config.Default().Notify
	run, fence, lock := fenceBudget(n, false)
	if run <= fence || fence != n.FenceTimeout.Duration || lock != runLockWait {
		t.Errorf("fence: %s %s %s", run, fence, lock)
	}
	run, fence, lock = fenceBudget(n, true)
	if run != n.StopTimeout.Duration || fence >= run || lock >= run {
		t.Errorf("stop: %s %s %s: must all fit in stop_timeout", run, fence, lock)
	}
	if promoteBudget(n) <= n.PromotionTimeout.Duration+n.PeerTimeout.Duration {
		t.Errorf("promotion budget %s leaves no room for the gate and the peer", promoteBudget(n))
	}
}

func TestPlanRound(t *testing.T) {
	th := func(ids ...uint64) []probe.Thread {
		var out []probe.Thread
		for _, id := range ids {
			out = append(out, probe.Thread{ID: id})
		}
		return out
	}
	ids := func(ts []probe.Thread) (out []uint64) {
		for _, t := range ts {
			out = append(out, t.ID)
		}
		return out
	}
	// Before read_only took: kill everything, wait for everything.
	p, mustGo := planRound(th(1, 2), false, nil, nil)
	if mustGo != nil || p.Done || p.Remaining != 2 || !slices.Equal(ids(p.Kill), []uint64{1, 2}) {
		t.Fatalf("before read_only: %+v %v", p, mustGo)
	}
	// read_only took with 1 and 2 there: they must go; 3 came later.
	p, mustGo = planRound(th(1, 2), true, nil, nil)
	if len(mustGo) != 2 || p.Done || p.Remaining != 2 {
		t.Fatalf("read_only took: %+v %v", p, mustGo)
	}
	p, mustGo = planRound(th(2, 3), true, mustGo, nil)
	if p.Done || p.Remaining != 1 || !slices.Equal(ids(p.Kill), []uint64{2, 3}) {
		t.Fatalf("one left: %+v", p)
	}
	// Only a late session remains: done (it cannot write).
	if p, _ = planRound(th(3), true, mustGo, nil); !p.Done || p.Remaining != 0 {
		t.Fatalf("only late sessions: %+v", p)
	}
	// A session the server refused to end is not asked again, nor waited
	// for here (the unkillable rule decides about it).
	denied := map[uint64]string{2: "not allowed"}
	if p, _ = planRound(th(2), true, mustGo, denied); !p.Done || len(p.Kill) != 0 {
		t.Fatalf("denied: %+v", p)
	}
}

func TestFenceOutcomeRules(t *testing.T) {
	frozen := fmt.Errorf("connecting to local: %w", context.DeadlineExceeded)
	refused := errors.New("dial unix /run/mysqld/mysqld.sock: connect: connection refused")
	for _, tc := range []struct {
		name          string
		err           error
		reached, stop bool
		retry, unfit  bool
		reason        string
	}{
		{"frozen server: keep trying", frozen, false, false, true, false, "retrying until the server answers"},
		{"frozen at STOP: no time", frozen, false, true, false, false, "fence failed: connecting"},
		{"not running: comes back read-only", refused, false, false, false, false, "fence failed: dial unix"},
		{"answered but not fenced: unfit", errors.New("read_only could not be set"), true, false, false, true, "fence failed: read_only"},
	} {
		o, retry := fenceFailedRule("FAULT", tc.err, tc.reached, tc.stop)
		if retry != tc.retry || o.Unfit != tc.unfit || o.Phase != state.PhaseFailed || o.Role != state.RoleStandby || !strings.Contains(o.Reason, tc.reason) {
			t.Errorf("%s: retry=%v %+v", tc.name, retry, o)
		}
	}
	pos := probe.Position{GTID: "1-1-5"}
	if o := fencedOutcome("BACKUP", pos, ""); o.Phase != state.PhaseDone || o.Unfit || o.FinalPosition != "gtid=1-1-5" || o.Position == nil {
		t.Errorf("fenced: %+v", o)
	}
	if o := fencedOutcome("BACKUP", pos, "IO thread stopped"); o.Phase != state.PhaseFailed || !o.Unfit || o.Reason != "IO thread stopped" {
		t.Errorf("not replicating: %+v", o)
	}
	if o := lateFencedOutcome("FAULT", pos); o.Phase != state.PhaseDone || o.Unfit || !strings.Contains(o.Reason, "fenced late") {
		t.Errorf("late: %+v", o)
	}
}
