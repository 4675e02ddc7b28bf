package agent

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
	"github.com/vipguard/vipguard/testsupport/nettest"
)

// TestNextTrack runs each history of polls through NextTrack, one rule per
// row. Polls: F fit, U unfit by the rules, D mysqld not running, N no
// answer, I a writer no witness answered. Values after each poll: - nothing decided (file not written),
// 0 fit, 1 unfit.
func TestNextTrack(t *testing.T) {
	rule := TrackRule{Fall: 3, Rise: 2}
	cases := []struct{ name, polls, want string }{
		{"the first fit poll decides at once (an agentcheck restart moves nothing)", "F", "0"},
		{"a first poll without an answer decides nothing", "N", "-"},
		{"no answer Fall times from the start", "NNN", "--1"},
		{"nothing decided, then fit: at once", "NNF", "--0"},
		{"a single slow poll never flips the file", "FNF", "000"},
		{"Fall-1 polls without an answer ride it out", "FNNF", "0000"},
		{"the failures must be in a row", "FNNFNNFNN", "000000000"},
		{"Fall polls in a row without an answer", "FNNN", "0001"},
		{"still unfit while no answer comes", "FNNNNN", "000111"},
		{"mysqld not running: at once", "FD", "01"},
		{"not running from the start", "D", "1"},
		{"unfit by the rules (maintenance, notify, replication): at once", "FU", "01"},
		{"unfit from the start", "U", "1"},
		{"back after Rise fit polls in a row", "FDFF", "0110"},
		{"a fit poll between faults is not a recovery", "FDFDFF", "011110"},
		{"recovery interrupted by a slow poll starts over", "FDFNFF", "011110"},
		{"recovery after a freeze", "FNNNFF", "000110"},
		{"a slow poll after a recovery counts from zero", "FNNNFFNNF", "000110000"},
		{"a writer no witness answers, twice in a row: unfit", "FII", "001"},
		{"one poll without a witness (a lost packet) moves nothing", "FIF", "000"},
		{"isolations must be in a row", "FIFIFI", "000000"},
		{"still unfit while cut off", "FIIII", "00111"},
		{"back after Rise fit polls once the witnesses answer", "FIIFF", "00110"},
		{"isolated from the start decides nothing until the second", "II", "-1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := runPolls(tc.polls, rule, func(s TrackState) byte {
				switch {
				case !s.Known:
					return '-'
				case s.Unfit:
					return '1'
				}
				return '0'
			})
			if got != tc.want {
				t.Fatalf("polls %s: values %s, want %s", tc.polls, got, tc.want)
			}
		})
	}
}

// runPolls folds polls written as letters (F fit, U unfit, D dead, N no
// answer, I isolated) and shows each state with show.
func runPolls(polls string, rule TrackRule, show func(TrackState) byte) string {
	var s TrackState
	var got []byte
	for _, c := range polls {
		kind := map[rune]PollKind{'F': PollFit, 'U': PollUnfit, 'D': PollDead, 'N': PollNoAnswer, 'I': PollIsolated}[c]
		s = NextTrack(s, Poll{Kind: kind, Reason: string(c)}, rule)
		got = append(got, show(s))
	}
	return string(got)
}

// Silent marks an unfit state that comes from mysqld giving no answer or
// not running, never one a rule decided on an answer.
func TestTrackSilent(t *testing.T) {
	rule := TrackRule{Fall: 3, Rise: 2}
	cases := []struct{ polls, want string }{
		{"FNNN", "___S"},   // frozen past the tolerance
		{"FD", "_S"},       // not running
		{"FU", "_1"},       // a rule: maintenance, replication, notify
		{"FII", "__1"},     // cut off
		{"FDFF", "_SS_"},   // silent until fit Rise times
		{"FDU", "_S1"},     // answers again, unfit by a rule
		{"FUNNN", "_111S"}, // then no answer
	}
	for _, tc := range cases {
		got := runPolls(tc.polls, rule, func(s TrackState) byte {
			switch {
			case s.Unfit && s.Silent:
				return 'S'
			case s.Unfit:
				return '1'
			}
			return '_'
		})
		if got != tc.want {
			t.Errorf("polls %s: %s, want %s", tc.polls, got, tc.want)
		}
	}
	tr := &Tracker{}
	now := time.Now()
	tr.state.Store(&TrackState{Known: true, Unfit: true, Silent: true, Reason: "gone", At: now.Add(-time.Second)})
	if got := tr.Silent(now, 2*time.Second); got != "gone" {
		t.Errorf("fresh silent state: %q", got)
	}
	if got := tr.Silent(now, 500*time.Millisecond); got != "" {
		t.Errorf("a stale decision proves nothing: %q", got)
	}
	if got := (&Tracker{}).Silent(now, time.Second); got != "" {
		t.Errorf("no decision yet: %q", got)
	}
}

func TestTrackReasons(t *testing.T) {
	rule := TrackRule{Fall: 3, Rise: 2}
	s := NextTrack(TrackState{}, Poll{Kind: PollFit, Reason: "writer: read_only=OFF"}, rule)
	s = NextTrack(s, Poll{Kind: PollNoAnswer, Reason: "mysqld did not answer within 150ms"}, rule)
	if got := s.Describe(rule); got != "writer: read_only=OFF; no answer for 1 of 3 polls" {
		t.Errorf("holding: %q", got)
	}
	s = NextTrack(s, Poll{Kind: PollNoAnswer, Reason: "x"}, rule)
	s = NextTrack(s, Poll{Kind: PollNoAnswer, Reason: "mysqld did not answer within 150ms"}, rule)
	if got := s.Describe(rule); got != "no answer for 3 polls in a row (agent.unresponsive_after): mysqld did not answer within 150ms" {
		t.Errorf("fallen: %q", got)
	}
	s = NextTrack(s, Poll{Kind: PollFit, Reason: "writer"}, rule)
	if got := s.Describe(rule); !strings.HasSuffix(got, "; fit again for 1 of 2 polls") {
		t.Errorf("rising: %q", got)
	}
}

// readTrack returns the file's value as "0", "1", or "" when absent.
func readTrack(t *testing.T, path string) (string, *check.TrackFile) {
	t.Helper()
	f, err := check.ReadTrack(path)
	if err != nil {
		t.Fatal(err)
	}
	if f == nil {
		return "", nil
	}
	if f.BadContent != nil {
		t.Fatal(f.BadContent)
	}
	if f.Unfit {
		return "1", f
	}
	return "0", f
}

// waitTrack waits until the file says want and returns how long it took.
func waitTrack(t *testing.T, path, want string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, f := readTrack(t, path)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			reason := ""
			if f != nil {
				reason = f.Reason
			}
			t.Fatalf("after %s the track file says %q (%s), want %q", limit, got, reason, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestTrackRealServer: agentcheck's fast path against a real mariadbd. A
// kill flips the file at once, a restart clears it; a stall shorter than
// the tolerance leaves it at 0, a longer one flips it.
func TestTrackRealServer(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 41})
	// interval and stale_after spelled out: testConfig would take the
	// track_ keys for its own.
	cfg := socketConfig(t, s, `interval = "100ms"
stale_after = "600ms"
track_interval = "100ms"
track_timeout = "80ms"
unresponsive_after = "1s"`)
	path := cfg.Agent.TrackFile
	srv := NewServer(cfg, discardLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Tracker.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitTrack(t, path, "0", 10*time.Second)

	// A 400 ms stall: up to 5 polls without an answer, 10 needed.
	if err := s.Freeze(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	stallEnd := time.Now().Add(400 * time.Millisecond)
	watchEnd := stallEnd.Add(600 * time.Millisecond)
	thawed := false
	for time.Now().Before(watchEnd) {
		if !thawed && time.Now().After(stallEnd) {
			if err := s.Thaw(); err != nil {
				t.Fatal(err)
			}
			thawed = true
		}
		v, f := readTrack(t, path)
		if v != "0" {
			s.Thaw()
			t.Fatalf("a 400ms stall flipped the file: %q %+v", v, f)
		}
		if r := f.Reason; !slices.Contains(seen, r) {
			seen = append(seen, r)
		}
		time.Sleep(3 * time.Millisecond)
	}
	// Proof the stall was seen, or this part would prove nothing.
	if !slices.ContainsFunc(seen, func(r string) bool { return strings.Contains(r, "no answer for") }) {
		t.Fatalf("the stall was never seen by the fast path; reasons: %q", seen)
	}
	t.Logf("through the stall: %q", seen)

	// A freeze past the tolerance flips it; thawing clears it.
	waitTrack(t, path, "0", 5*time.Second)
	if err := s.Freeze(); err != nil {
		t.Fatal(err)
	}
	took := waitTrack(t, path, "1", 10*time.Second)
	_, f := readTrack(t, path)
	t.Logf("frozen mysqld: file says 1 after %s (unresponsive_after 1s): %s", took.Round(time.Millisecond), f.Reason)
	if !strings.Contains(f.Reason, "no answer for 10 polls in a row") {
		t.Errorf("reason: %q", f.Reason)
	}
	if err := s.Thaw(); err != nil {
		t.Fatal(err)
	}
	waitTrack(t, path, "0", 10*time.Second)

	// kill -9: the socket refuses, the file flips at the next poll.
	s.Kill()
	took = waitTrack(t, path, "1", 10*time.Second)
	_, f = readTrack(t, path)
	t.Logf("killed mysqld: file says 1 after %s: %s", took.Round(time.Millisecond), f.Reason)
	if !strings.Contains(f.Reason, "mysqld is not running") {
		t.Errorf("reason: %q", f.Reason)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitTrack(t, path, "0", 10*time.Second)

	// Refreshed every interval even when nothing changes: mysqlcheck
	// tells a dead agentcheck by the file's age.
	_, f1 := readTrack(t, path)
	time.Sleep(350 * time.Millisecond)
	_, f2 := readTrack(t, path)
	if !f2.ModTime.After(f1.ModTime) {
		t.Fatalf("file not refreshed: mtime %s then %s", f1.ModTime, f2.ModTime)
	}
}

// TestTrackWriterCutOff: a writer whose witness stops answering (cut off
// with its link up) steps down on the fast path after two polls, and back
// when the witness answers again; a standby never asks.
func TestTrackWriterCutOff(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 42})
	silent, _ := nettest.Silent(t)
	refusing := nettest.Refusing(t)
	cfg := socketConfig(t, s, `interval = "100ms"
stale_after = "600ms"
track_interval = "100ms"
track_timeout = "80ms"`)
	cfg.Check.Witnesses = []string{refusing}
	cfg.Check.WitnessTimeout.Duration = 100 * time.Millisecond
	noRepl := false // a lone server: the standby part must not be unfit for that
	cfg.Check.RequireReplication = &noRepl
	if err := state.Dir(cfg.StateDir).WriteOutcome(state.Outcome{Event: "MASTER", Phase: state.PhaseDone, Role: state.RoleWriter}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, s, "SET GLOBAL read_only=0")
	var cur atomic.Pointer[config.Config]
	cur.Store(cfg)
	srv := NewServer(cfg, discardLog())
	srv.Tracker.Config = cur.Load
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Tracker.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	path := cfg.Agent.TrackFile

	waitTrack(t, path, "0", 10*time.Second)
	cut := *cfg
	cut.Check.Witnesses = []string{silent}
	cur.Store(&cut)
	waitTrack(t, path, "1", 5*time.Second)
	if _, f := readTrack(t, path); !strings.Contains(f.Reason, "isolated") {
		t.Fatalf("reason %q", f.Reason)
	}
	cur.Store(cfg)
	waitTrack(t, path, "0", 5*time.Second)

	// A standby cut off is no second writer: it does not step down.
	mustExec(t, s, "SET GLOBAL read_only=1")
	if err := state.Dir(cfg.StateDir).WriteOutcome(state.Outcome{Event: "BACKUP", Phase: state.PhaseDone, Role: state.RoleStandby}); err != nil {
		t.Fatal(err)
	}
	cur.Store(&cut)
	time.Sleep(time.Second)
	if v, f := readTrack(t, path); v != "0" {
		t.Fatalf("a standby without a witness stepped down: %q %+v", v, f)
	}
}
