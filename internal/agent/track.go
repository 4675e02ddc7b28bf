package agent

// The fast path of issue 11 (docs/fast-failover.md): a loop of its own,
// beside the HAProxy poller, that polls mysqld every agent.track_interval
// under agent.track_timeout, judges each poll by mysqlcheck's rules
// (check.Evaluate), and keeps keepalived's track file saying 0 (fit) or 1
// (unfit). keepalived enters FAULT the moment the file says 1.
//
// NextTrack holds the whole decision. The poller's own loop is left alone,
// its interval and deadline tuned for HAProxy's answers; but a server the
// fast path finds silent (Tracker.Silent) is down in those answers too,
// at once rather than when the poller's own poll fails.

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
)

// PollKind is what one poll of the fast path saw.
type PollKind int

const (
	// PollFit: the server was read, and mysqlcheck's rules say fit.
	PollFit PollKind = iota
	// PollUnfit: read (or maintenance is on), and the rules say unfit:
	// a fact, not a timing accident.
	PollUnfit
	// PollDead: connection refused or the socket gone: no mysqld is
	// running (check.NotRunning).
	PollDead
	// PollNoAnswer: no answer within the deadline, or any other failure:
	// mysqld may be frozen, or only slow for a moment.
	PollNoAnswer
	// PollIsolated: a writer that no witness answered: cut off, or a
	// packet lost on the way to the witness.
	PollIsolated
)

func (k PollKind) String() string {
	return [...]string{"fit", "unfit", "dead", "no answer", "isolated"}[k]
}

// isolatedFall is how many polls in a row a writer must find no witness
// before it steps down: one lost SYN must not move the VIP, and two polls
// (about 0.5–1 s with the witness deadline) still come before the peer
// takes over a holder it stopped hearing (3 adverts) and opens writes.
const isolatedFall = 2

// Poll is one poll's result.
type Poll struct {
	Kind   PollKind
	Reason string
}

// TrackRule is how the fast path counts.
type TrackRule struct {
	// Fall is how many polls in a row without an answer make the node
	// unfit (config.Agent.TrackFall: unresponsive_after / track_interval).
	Fall int
	// Rise is how many fit polls in a row make an unfit node fit again.
	Rise int
}

// trackRise is the example vrrp_script's rise: a mysqld restarting in a
// loop does not bounce the instance between FAULT and BACKUP every poll.
const trackRise = 2

// TrackState is the fast path's decision, carried from poll to poll.
type TrackState struct {
	// Known is false until a poll decided: nothing is written before,
	// so that restarting agentcheck on the VIP holder moves nothing.
	Known bool
	// Unfit is the value the file says (1), Reason why.
	Unfit  bool
	Reason string
	// Silent says the node is unfit because mysqld gave no answer (for
	// Fall polls) or is not running, rather than by a rule it answered.
	Silent bool
	// At is when the poll behind this state ended.
	At time.Time
	// Fails counts polls in a row without an answer, Fits fit polls in
	// a row, Isolations polls in a row that found no witness.
	Fails, Fits, Isolations int
}

// NextTrack folds one poll into the state. The rules:
//   - unfit by the rules (maintenance, notify's outcome, replication), or
//     mysqld not running: 1 at once;
//   - no answer: 1 once Fall polls in a row had none; until then the
//     value stays what it was (a single slow poll never flips it);
//   - a writer no witness answered: 1 after isolatedFall polls in a row;
//   - fit: 0 at once when nothing was decided yet (agentcheck just
//     started), else after Rise fit polls in a row.
func NextTrack(s TrackState, p Poll, r TrackRule) TrackState {
	if p.Kind != PollIsolated {
		s.Isolations = 0
	}
	switch p.Kind {
	case PollUnfit, PollDead:
		return TrackState{Known: true, Unfit: true, Reason: p.Reason, Silent: p.Kind == PollDead}
	case PollIsolated:
		s.Isolations++
		s.Fails, s.Fits = 0, 0
		if s.Isolations >= isolatedFall {
			s.Known, s.Unfit, s.Reason, s.Silent = true, true, p.Reason, false
		}
		return s
	case PollNoAnswer:
		s.Fails++
		s.Fits = 0
		if s.Fails >= r.Fall {
			s.Known, s.Unfit, s.Silent = true, true, true
			s.Reason = fmt.Sprintf("no answer for %d polls in a row (agent.unresponsive_after): %s", s.Fails, p.Reason)
		}
		return s
	}
	s.Fails = 0
	s.Fits++
	if !s.Known || !s.Unfit || s.Fits >= r.Rise {
		s.Known, s.Unfit, s.Reason, s.Silent = true, false, p.Reason, false
	}
	return s
}

// Describe is the reason written to the file: while the value holds
// through polls without an answer, it says how many so far.
func (s TrackState) Describe(r TrackRule) string {
	if !s.Unfit && s.Fails > 0 {
		return fmt.Sprintf("%s; no answer for %d of %d polls", s.Reason, s.Fails, r.Fall)
	}
	if s.Unfit && s.Fits > 0 {
		return fmt.Sprintf("%s; fit again for %d of %d polls", s.Reason, s.Fits, r.Rise)
	}
	return s.Reason
}

// Tracker runs the fast path.
type Tracker struct {
	Config func() *config.Config
	Files  func() *Files
	Log    *slog.Logger

	state atomic.Pointer[TrackState]
}

// Current returns the decision in force (nil before the first poll).
func (t *Tracker) Current() *TrackState { return t.state.Load() }

// Silent says why the fast path finds mysqld silent (frozen past
// agent.unresponsive_after, or not running), "" when it does not or its
// decision is older than staleAfter (a stuck loop proves nothing).
func (t *Tracker) Silent(now time.Time, staleAfter time.Duration) string {
	s := t.Current()
	if s == nil || !s.Unfit || !s.Silent || now.Sub(s.At) > staleAfter {
		return ""
	}
	return s.Reason
}

// Run polls every agent.track_interval until ctx ends, writing the file
// after every poll that leaves a decision: also when it did not change,
// so that mysqlcheck can tell a live writer from a dead one by the
// file's age. It does nothing while agent.track_file is "". On the way
// out the file is left as it is: removing it would read as "fine".
func (t *Tracker) Run(ctx context.Context) {
	var s TrackState
	var lastErr string
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		cfg := t.Config()
		iv := cfg.Agent.TrackInterval.Duration
		timer.Reset(iv)
		path := cfg.Agent.TrackFile
		if path == "" {
			continue
		}
		p := t.poll(ctx, cfg)
		if ctx.Err() != nil {
			return
		}
		rule := TrackRule{Fall: cfg.Agent.TrackFall(), Rise: trackRise}
		prev := s
		s = NextTrack(s, p, rule)
		s.At = time.Now()
		st := s
		t.state.Store(&st)
		if !s.Known {
			continue
		}
		if s.Unfit != prev.Unfit || !prev.Known {
			t.Log.Info("track file changes", "file", path, "unfit", s.Unfit, "reason", s.Reason, "poll_took", time.Since(start))
		}
		err := check.WriteTrack(path, check.Track{Unfit: s.Unfit, Writer: check.WriterAgent, Reason: s.Describe(rule)})
		if msg := errString(err); msg != lastErr {
			if err != nil {
				t.Log.Error("cannot write the track file; keepalived has mysqlcheck only", "err", msg)
			} else {
				t.Log.Info("track file written again", "file", path)
			}
			lastErr = msg
		}
	}
}

// poll reads the server once under agent.track_timeout and judges it as
// mysqlcheck would. The witnesses are asked only on a writer (one refused
// connection per witness and poll): a standby cut off is no second writer,
// and its promotion asks them anyway.
func (t *Tracker) poll(ctx context.Context, cfg *config.Config) Poll {
	timeout := cfg.Agent.TrackTimeout.Duration
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in := check.Input{Timeout: timeout}
	in.Snapshot, in.SnapshotErr = check.Snapshot(ctx, cfg)
	files := t.Files()
	in.Maintenance, _ = files.Maintenance()
	in.Outcome, in.OutcomeErr = files.Outcome()
	if in.SnapshotErr == nil && in.Snapshot.Writable() {
		// Only a writer: cut off with its link up it would keep the VIP
		// and its writes while the peer takes over. Asked after the
		// server's read, under the witnesses' own deadline.
		in.Witness = check.AskWitnesses(context.WithoutCancel(ctx), cfg)
	}
	v := check.Evaluate(cfg.Check, in)
	switch {
	case in.Witness.Isolated():
		return Poll{Kind: PollIsolated, Reason: v.Reason}
	case in.Maintenance.On, in.SnapshotErr == nil && !v.Fit:
		return Poll{Kind: PollUnfit, Reason: v.Reason}
	case in.SnapshotErr == nil:
		return Poll{Kind: PollFit, Reason: v.Reason}
	case check.NotRunning(in.SnapshotErr):
		return Poll{Kind: PollDead, Reason: v.Reason}
	}
	return Poll{Kind: PollNoAnswer, Reason: v.Reason}
}
