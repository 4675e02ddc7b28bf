package agent

import (
	"context"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
)

// State is the result of one poll.
type State struct {
	Snapshot *probe.Snapshot
	Err      error
	// At is when the poll ended; Took how long it ran.
	At   time.Time
	Took time.Duration
}

// Poller reads MySQL once per interval and keeps the last result.
type Poller struct {
	// Config returns the current configuration (it changes on SIGHUP).
	Config  func() *config.Config
	Log     *slog.Logger
	Metrics *Metrics

	// keeper, when set, follows each poll (semi-sync roles and sightings).
	keeper *semiSyncKeeper
	// kick asks for a poll now (a transition notify just recorded).
	kick chan struct{}

	state atomic.Pointer[State]
	// loopAt is when the loop last finished a poll attempt (unix nanos),
	// success or not: the watchdog and /liveness ask about the loop, not
	// about MySQL.
	loopAt atomic.Int64
}

// Current returns the last poll result (nil before the first).
func (p *Poller) Current() *State { return p.state.Load() }

// LoopAlive reports whether the loop finished an attempt within bound.
func (p *Poller) LoopAlive(now time.Time, bound time.Duration) bool {
	at := p.loopAt.Load()
	return at != 0 && now.Sub(time.Unix(0, at)) <= bound
}

// pollTimeout is the deadline of one poll: the check timeout, and never
// longer than the interval, so polls never overlap or pile up.
func pollTimeout(c *config.Config) time.Duration {
	return min(c.Check.Timeout.Duration, c.Agent.Interval.Duration)
}

// outcomeWatch is how often the loop looks at notify's outcome file: a
// promotion that just opened writes is answered "up" on the next check
// instead of after the next interval's poll (HAProxy then follows within
// its agent-inter). A stat of one small file, 20 times a second.
const outcomeWatch = 50 * time.Millisecond

// runningWatch bounds the fast polls while a notify run is in progress:
// longer than a promotion's catch-up gate (promotion_timeout, 10 s by
// default) with its fences around it.
const runningWatch = 30 * time.Second

// Run polls until ctx ends. The first poll runs at once; a new outcome
// from notify brings the next one forward.
func (p *Poller) Run(ctx context.Context) {
	interval := p.Config().Agent.Interval.Duration
	if p.keeper != nil {
		go p.keeper.run(ctx, p.Current)
	}
	if p.kick == nil {
		p.kick = make(chan struct{}, 1)
	}
	// The file as it is before the first poll: a change from here on is
	// seen, one before is in that poll.
	first, _ := os.Lstat(p.outcomePath())
	p.observeOutcome()
	go p.watchOutcome(ctx, first)
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastErr string
	for {
		st := p.PollOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		// Log transitions only: one line per change, not per second.
		if msg := errString(st.Err); msg != lastErr {
			if st.Err != nil {
				p.Log.Warn("poll failed", "err", msg)
			} else {
				p.Log.Info("poll ok again", "took", st.Took)
			}
			lastErr = msg
		}
		if iv := p.Config().Agent.Interval.Duration; iv != interval {
			interval = iv
			t.Reset(interval)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.kick:
		}
	}
}

// watchOutcome kicks a poll whenever notify's outcome file is replaced
// (notify writes it by rename, so its identity changes each time), and
// at every look while a notify run is in progress: a fence turns
// read_only on long before it records that it is done, and the answers
// and metrics must not show the old writer as one meanwhile. A run that
// never ends (notify killed) is polled for fast only runningWatch long.
func (p *Poller) watchOutcome(ctx context.Context, last os.FileInfo) {
	t := time.NewTicker(outcomeWatch)
	defer t.Stop()
	running, since := false, time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Lstat(p.outcomePath())
		if err != nil {
			continue
		}
		changed := last == nil || !os.SameFile(last, fi) || !fi.ModTime().Equal(last.ModTime())
		if changed {
			running, since = p.observeOutcome(), time.Now()
		}
		if changed || running && time.Since(since) < runningWatch {
			select {
			case p.kick <- struct{}{}:
			default:
			}
		}
		last = fi
	}
}

// observeOutcome shows notify's outcome as it is now to the promotion
// counter (a small file, read when it was replaced), and says whether a
// notify run is in progress.
func (p *Poller) observeOutcome() (running bool) {
	o, _ := state.Dir(p.Config().StateDir).Outcome()
	if p.Metrics != nil {
		p.Metrics.observeOutcome(o)
	}
	return o != nil && o.Phase == state.PhaseRunning
}

func (p *Poller) outcomePath() string { return state.Dir(p.Config().StateDir).OutcomePath() }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// PollOnce reads the server once, stores and returns the result.
//
// Every poll dials a new connection and closes it afterwards. A
// persistent connection would keep working on a server whose listener is
// wedged or full (max_connections, a stuck accept), hiding exactly the
// failure HAProxy's clients would meet. One connection per interval costs
// the server about as much as the poll's queries.
func (p *Poller) PollOnce(ctx context.Context) *State {
	cfg := p.Config()
	timeout := pollTimeout(cfg)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	snap, err := check.Snapshot(ctx, cfg)
	now := time.Now()
	st := &State{Snapshot: snap, Err: err, At: now, Took: now.Sub(start)}
	p.state.Store(st)
	p.loopAt.Store(now.UnixNano())
	if p.Metrics != nil {
		p.Metrics.observePoll(st)
	}
	if p.keeper != nil {
		p.keeper.polled()
	}
	return st
}
