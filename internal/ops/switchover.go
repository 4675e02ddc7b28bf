package ops

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/nodestatus"
	"github.com/vipguard/vipguard/internal/state"
)

// Refusal is one reason not to start a switchover. Forceable ones are
// about the peer's fitness, which an operator may overrule; the others
// make a switchover meaningless or blind.
type Refusal struct {
	Reason    string
	Forceable bool
}

// Preflight says why a switchover from this node to the peer must not
// start (nil: it may). maxLag bounds the peer's replication lag.
func Preflight(local, peer *nodestatus.Status, peerErr string, maxLag time.Duration) []Refusal {
	var out []Refusal
	no := func(force bool, format string, a ...any) {
		out = append(out, Refusal{Reason: fmt.Sprintf(format, a...), Forceable: force})
	}
	switch {
	case local.MySQL == nil:
		no(false, "this node's server cannot be read: %s", local.PollError)
	case local.Role != nodestatus.RoleWriter:
		no(false, "this node is not the writer (role %s): switch over from the writer", local.Role)
	}
	if local.VIP != nil && !local.VIP.Held {
		no(false, "this node does not hold the VIP %s", local.VIP.Address)
	}
	if local.Maintenance.On {
		no(false, "maintenance is already on here (vipguard maint off first, or wait for the VIP to move)")
	}
	if peer == nil {
		no(true, "the peer cannot be read: %s", peerErr)
		return out
	}
	if peer.Maintenance.On {
		no(true, "the peer is in maintenance (%s)", peer.Maintenance.Reason)
	}
	if peer.MySQL == nil {
		no(true, "the peer's server cannot be read: %s", peer.PollError)
		return out
	}
	if !peer.Fit {
		no(true, "the peer is unfit: %s", peer.Reason)
	}
	if !peer.Streaming() {
		no(true, "the peer does not replicate from this node (every channel streaming)")
	}
	if lag, ok := peer.MaxLag(); !ok {
		no(true, "the peer's replication lag is unknown")
	} else if lag > maxLag {
		no(true, "the peer lags %s, above --max-lag %s", lag, maxLag)
	}
	return out
}

// Blocking reports whether refusals stop the switchover, force given.
func Blocking(rs []Refusal, force bool) bool {
	for _, r := range rs {
		if !r.Forceable || !force {
			return true
		}
	}
	return false
}

// Progress is how far a switchover got, judged from the two documents.
type Progress struct {
	// PeerPromoted: the peer is writable after a completed promotion.
	PeerPromoted bool
	// LocalFenced: this node is read-only, and notify fenced it after the
	// switchover began; LocalReplicating: every channel streams.
	LocalFenced, LocalReplicating bool
	// Failed says what went wrong in a way that will not mend by waiting.
	Failed string
}

// Done reports whether the switchover completed.
func (p Progress) Done() bool { return p.PeerPromoted && p.LocalFenced && p.LocalReplicating }

// Judge reads progress from the documents; began is when maintenance was
// turned on (a fence recorded before it does not count).
func Judge(local, peer *nodestatus.Status, began time.Time) Progress {
	var p Progress
	p.PeerPromoted = peer.Writer()
	if local != nil && local.MySQL != nil && (local.MySQL.ReadOnly || local.MySQL.SuperReadOnly) {
		if n := local.Notify; n != nil && n.Role == string(state.RoleStandby) && !n.At.Before(began) {
			switch {
			case n.Phase == string(state.PhaseDone) && !n.Unfit:
				p.LocalFenced = true
			case n.Phase == string(state.PhaseFailed) || n.Unfit:
				p.Failed = fmt.Sprintf("notify's fence here after %s: %s %s", n.Event, n.Phase, n.Reason)
			}
		}
		p.LocalReplicating = local.Streaming()
	}
	if peer != nil && peer.Notify != nil && !peer.Notify.At.Before(began) && peer.Notify.Unfit {
		p.Failed = fmt.Sprintf("the peer's notify refused or failed the promotion after %s: %s", peer.Notify.Event, peer.Notify.Reason)
	}
	return p
}

// Options tune a switchover.
type Options struct {
	// Timeout bounds the wait for the peer's promotion and this node's
	// fence.
	Timeout time.Duration
	// MaxLag is the most the peer may lag at the start.
	MaxLag time.Duration
	Force  bool
	DryRun bool
	// KeepMaintenance leaves maintenance on here afterwards.
	KeepMaintenance bool
	// PeerTimeout bounds each read of the peer's document.
	PeerTimeout time.Duration
	// Probe, when set, writes through the VIP during the switchover.
	Probe *ProbeOptions
	// SetMaintenance turns the maintenance flag on or off (the operator's
	// own switch, with who and why).
	SetMaintenance func(on bool, reason string) error
	// Out receives progress lines as they happen.
	Out io.Writer
}

// Report is what a switchover did.
type Report struct {
	From, To  string
	Refusals  []Refusal
	Forced    bool
	Completed bool
	// Steps are timestamped progress lines.
	Steps []string
	// Problems are what went wrong.
	Problems []string
	// Positions at the end.
	LocalGTID, PeerGTID string
	// PeerPollAge is the age of the peer's position (its agentcheck's
	// last poll).
	PeerPollAge time.Duration
	Probe       *ProbeResult
	Took        time.Duration
}

// Outcome errors of Switchover.
var (
	ErrRefused    = fmt.Errorf("switchover refused")
	ErrIncomplete = fmt.Errorf("switchover did not complete")
)

// pollEvery is how often the wait reads both nodes.
const pollEvery = 250 * time.Millisecond

// Switchover moves the writer from this node to the peer: maintenance on
// here makes mysqlcheck say unfit, keepalived moves the VIP, notify fences
// this node and promotes the peer; it waits for both, then turns
// maintenance off (unless kept). Maintenance is turned off also when the
// switchover does not complete, so that a fit node can hold the VIP again.
func Switchover(ctx context.Context, cfg *config.Config, o Options) (*Report, error) {
	start := time.Now()
	r := &Report{}
	step := func(format string, a ...any) {
		line := fmt.Sprintf("%6.2fs  %s", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
		r.Steps = append(r.Steps, line)
		if o.Out != nil {
			fmt.Fprintln(o.Out, line)
		}
	}
	p := ReadPair(ctx, cfg, o.PeerTimeout, false)
	r.From, r.To = "this node ("+p.Local.Host+")", "the peer"
	if cfg.Peer.Host != "" {
		r.To += " " + cfg.Peer.Host
	}
	if p.Peer != nil {
		r.To += " (" + p.Peer.Host + ")"
	}
	r.Refusals = Preflight(p.Local, p.Peer, p.PeerError, o.MaxLag)
	if Blocking(r.Refusals, o.Force) {
		return r, ErrRefused
	}
	r.Forced = len(r.Refusals) > 0
	if o.DryRun {
		return r, nil
	}
	var probe *Probe
	if o.Probe != nil {
		var err error
		if probe, err = StartProbe(ctx, *o.Probe); err != nil {
			return r, fmt.Errorf("starting the write probe: %w", err)
		}
		step("write probe running through %s", o.Probe.Target.String())
	}
	reason := fmt.Sprintf("switchover to %s (vipguard switchover)", cfg.Peer.Host)
	if err := o.SetMaintenance(true, reason); err != nil {
		if probe != nil {
			probe.Stop()
		}
		return r, fmt.Errorf("turning maintenance on: %w", err)
	}
	// The file records whole seconds: a fence in the same second counts.
	began := time.Now().Truncate(time.Second)
	step("maintenance on here: mysqlcheck says unfit, keepalived moves the VIP")

	deadline := time.Now().Add(o.Timeout)
	// seen: each step is told once, though a read between two may see a
	// node mid-way (a second fence running).
	var seen Progress
	var local, peer *nodestatus.Status
	for {
		p := ReadPair(ctx, cfg, o.PeerTimeout, false)
		local, peer = p.Local, p.Peer
		pr := Judge(local, peer, began)
		if pr.PeerPromoted && !seen.PeerPromoted {
			seen.PeerPromoted = true
			step("%s promoted: writable, notify's promotion done", r.To)
		}
		if pr.LocalFenced && !seen.LocalFenced {
			seen.LocalFenced = true
			step("this node fenced by notify: read-only, final position %s", local.Notify.FinalPosition)
		}
		if pr.LocalReplicating && pr.LocalFenced && !seen.LocalReplicating {
			seen.LocalReplicating = true
			step("this node replicates from the peer")
		}
		if pr.Done() {
			r.Completed = true
			break
		}
		if pr.Failed != "" {
			r.Problems = append(r.Problems, pr.Failed)
			break
		}
		if time.Now().After(deadline) {
			r.Problems = append(r.Problems, fmt.Sprintf("not complete within %s: %s", o.Timeout, describeProgress(pr, p.PeerError)))
			break
		}
		select {
		case <-ctx.Done():
			r.Problems = append(r.Problems, "interrupted: "+ctx.Err().Error())
		case <-time.After(pollEvery):
			continue
		}
		break
	}
	if !o.KeepMaintenance || !r.Completed {
		if err := o.SetMaintenance(false, ""); err != nil {
			r.Problems = append(r.Problems, "turning maintenance off failed: "+err.Error())
		} else {
			step("maintenance off here")
		}
	} else {
		step("maintenance kept on here (--keep-maintenance)")
	}
	if probe != nil {
		// A moment more, so that the window's end is seen.
		if r.Completed {
			sleepCtx(ctx, 500*time.Millisecond)
		}
		res := probe.Stop()
		r.Probe = &res
	}
	// Final positions from fresh documents: the peer's agentcheck answers
	// from a poll up to one interval old.
	if r.Completed {
		sleepCtx(ctx, cfg.Agent.Interval.Duration)
		if p := ReadPair(ctx, cfg, o.PeerTimeout, false); p.Peer != nil {
			local, peer = p.Local, p.Peer
		}
	}
	if local != nil && local.MySQL != nil {
		r.LocalGTID = local.MySQL.GTID
	}
	if peer != nil && peer.MySQL != nil {
		r.PeerGTID, r.PeerPollAge = peer.MySQL.GTID, time.Duration(peer.PollAge*float64(time.Second))
	}
	r.Took = time.Since(start)
	if !r.Completed {
		return r, ErrIncomplete
	}
	return r, nil
}

func describeProgress(p Progress, peerErr string) string {
	var missing []string
	if !p.PeerPromoted {
		m := "the peer has not completed a promotion"
		if peerErr != "" {
			m += " (" + peerErr + ")"
		}
		missing = append(missing, m)
	}
	if !p.LocalFenced {
		missing = append(missing, "notify has not fenced this node")
	}
	if !p.LocalReplicating {
		missing = append(missing, "this node does not replicate from the peer")
	}
	return strings.Join(missing, "; ")
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
