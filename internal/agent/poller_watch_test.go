package agent

import (
	"context"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/state"
)

// countKicks counts the polls watchOutcome asks for during d.
func countKicks(p *Poller, d time.Duration) int {
	n := 0
	end := time.After(d)
	for {
		select {
		case <-p.kick:
			n++
		case <-end:
			return n
		}
	}
}

// While notify's run is in progress the watch asks for a poll at every
// look; a finished run asks once, then nothing until the next change.
func TestWatchOutcomePollsThroughARun(t *testing.T) {
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	dir := state.Dir(cfg.StateDir)
	p := &Poller{Config: func() *config.Config { return cfg }, kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.watchOutcome(ctx, nil)

	if err := dir.WriteOutcome(state.Outcome{Event: "FAULT", Phase: state.PhaseRunning, Role: state.RoleStandby}); err != nil {
		t.Fatal(err)
	}
	if n := countKicks(p, 10*outcomeWatch); n < 5 {
		t.Errorf("%d polls asked for in %s of a running fence, want one per look", n, 10*outcomeWatch)
	}
	if err := dir.WriteOutcome(state.Outcome{Event: "FAULT", Phase: state.PhaseDone, Role: state.RoleStandby}); err != nil {
		t.Fatal(err)
	}
	// One for the change; one more may still be queued from the run.
	if n := countKicks(p, 4*outcomeWatch); n < 1 || n > 2 {
		t.Errorf("%d polls asked for once the fence was done, want 1", n)
	}
	if n := countKicks(p, 6*outcomeWatch); n != 0 {
		t.Errorf("%d polls asked for with nothing changing, want 0", n)
	}
}
