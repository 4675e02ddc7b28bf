package lab

import (
	"fmt"
	"testing"
	"time"
)

// flapCycles cuts and heals the VIP holder: the partition a new user
// measured (holder's veth off the bridge, link up), as shipped: no
// witness configured, only the proxy agentcheck learned.
const (
	flapCycles = 5
	flapCut    = 4 * time.Second
	flapHealed = 4 * time.Second
)

// A pair installed as documented never has two writers, even with the
// network flapping under writes, and loses nothing acknowledged.
func TestFlappingPartition(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	sampler, err := l.StartSampler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := l.StartLoad(ctx, LoadOptions{})
	if err != nil {
		sampler.Stop()
		t.Fatal(err)
	}
	var cut []string
	ferr := func() error {
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
		for i := 0; i < flapCycles; i++ {
			h, err := l.Holder(ctx)
			if err != nil || (h != "db1" && h != "db2") {
				h = "db1" // nobody holds it: cut one anyway
			}
			cut = append(cut, h)
			if err := l.Partition(ctx, h); err != nil {
				return err
			}
			if err := sleep(ctx, flapCut); err != nil {
				return err
			}
			if err := l.HealLink(ctx, h); err != nil {
				return err
			}
			if err := sleep(ctx, flapHealed); err != nil {
				return err
			}
		}
		return nil
	}()
	lr, lerr := ld.Stop()
	rep := sampler.Stop()
	line := fmt.Sprintf("flapping partition (%d × %s cut / %s healed, cut %v): samples %d, both writable %d, writes acked %d, longest write gap %.2fs",
		flapCycles, flapCut, flapHealed, cut, rep.Samples, len(rep.BothWritable), len(lr.Acked), lr.MaxGap().Seconds())
	t.Log(line)
	record(t, line)
	if ferr != nil {
		t.Fatal(ferr)
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	if n := len(rep.BothWritable); n > 0 {
		t.Errorf("both nodes writable in %d of %d samples, first at %s\n%s", n, rep.Samples, rep.BothWritable[0].Format("15:04:05.000"), l.Diagnostics())
	}
	if err := l.Recover(ctx, 90*time.Second); err != nil {
		t.Fatalf("recovering: %v\n%s", err, l.Diagnostics())
	}
	if err := l.VerifyAll(ctx, lr.Acked); err != nil {
		t.Fatalf("after healing: %v\n%s", err, l.Diagnostics())
	}
}

// Restarting HAProxy moves nothing: while it is down nobody agent-checks
// the nodes, but the learned proxy host still answers the witness probe,
// so the holder stays fit, keeps the VIP and its writes, and nothing is
// fenced or promoted.
func TestProxyRestartMovesNothing(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
	holder, err := l.Holder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := outcomes(t, l)
	sampler, err := l.StartSampler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rerr := l.RestartHAProxy(holder)
	// Several witness checks and keepalived's fall window after it.
	serr := sleep(ctx, 5*time.Second)
	rep := sampler.Stop()
	if rerr != nil {
		t.Fatalf("restarting haproxy: %v\n%s", rerr, l.Diagnostics())
	}
	if serr != nil {
		t.Fatal(serr)
	}
	if h, err := l.Holder(ctx); err != nil || h != holder {
		t.Errorf("the VIP moved from %s to %q (%v) across a proxy restart", holder, h, err)
	}
	for name, st := range map[string]string{holder: "MASTER", l.Nodes[holder].Peer: "BACKUP"} {
		if got := l.KeepalivedState(name); got != st {
			t.Errorf("%s keepalived %s after a proxy restart, want %s", name, got, st)
		}
	}
	if after := outcomes(t, l); after != before {
		t.Errorf("notify ran across a proxy restart: outcomes %q, then %q", before, after)
	}
	if n := len(rep.BothWritable); n > 0 {
		t.Errorf("both nodes writable in %d samples", n)
	}
	if err := l.WaitStable(ctx, 30*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
}

// outcomes describes both nodes' last notify transitions.
func outcomes(t *testing.T, l *Lab) string {
	t.Helper()
	s := ""
	for _, name := range []string{"db1", "db2"} {
		o, err := l.stateOutcome(name)
		if err != nil {
			t.Fatal(err)
		}
		s += fmt.Sprintf("%s=%s ", name, o)
	}
	return s
}
