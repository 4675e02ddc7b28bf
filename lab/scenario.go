package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Fault is one way to make the VIP holder unfit (or unreachable).
type Fault struct {
	Name string
	// What is done to the holder, for people.
	Desc string
	// Inject does it to holder.
	Inject func(ctx context.Context, l *Lab, holder string) error
	// Undo, when set, runs before the generic Recover (Recover alone undoes
	// every injector; Undo exists for faults whose undoing is part of the
	// story, such as maintenance off).
	Undo func(ctx context.Context, l *Lab, holder string) error
	// RecoveryRace, when set, says why today's stack is known to leave both
	// nodes writable for a moment while this fault is undone; the runner
	// then reports such samples instead of failing on them.
	RecoveryRace string
}

// Faults are the failover scenarios, in the order the bench runs them.
var Faults = []Fault{
	{Name: "kill", Desc: "kill -9 mysqld on the VIP holder",
		Inject: func(_ context.Context, l *Lab, h string) error { l.KillMySQL(h); return nil }},
	{Name: "freeze", Desc: "SIGSTOP mysqld on the VIP holder (thawed at recovery)",
		Inject: func(_ context.Context, l *Lab, h string) error { return l.FreezeMySQL(h) },
		// The thawed node still has read_only=OFF until its FAULT notify,
		// queued while it was frozen, lands (about 0.2 s seen here). The
		// stand-in notify cannot close that window; cmd/notify must.
		RecoveryRace: "thawed old writer keeps read_only=OFF until its queued FAULT notify lands"},
	{Name: "maintenance", Desc: "mysqlcheck maint on at the VIP holder (off at recovery)",
		Inject: func(ctx context.Context, l *Lab, h string) error {
			return l.Maintenance(ctx, h, true, "lab: planned switchover")
		},
		Undo: func(ctx context.Context, l *Lab, h string) error { return l.Maintenance(ctx, h, false, "") }},
	{Name: "keepalived-stop", Desc: "stop keepalived (SIGTERM) on the VIP holder (restarted at recovery)",
		Inject: func(_ context.Context, l *Lab, h string) error { l.StopKeepalived(h); return nil }},
	{Name: "link-cut", Desc: "take the VIP holder's link down (carrier loss; healed at recovery)",
		Inject: func(ctx context.Context, l *Lab, h string) error { return l.CutLink(ctx, h) }},
	{Name: "partition", Desc: "isolate the VIP holder, its link staying up (healed at recovery)",
		// keepalived cannot see it (the link is up; the holder only stops
		// hearing its peer); mysqlcheck's witness check (the proxy host)
		// makes the isolated holder unfit, so it goes FAULT and notify
		// fences it while the peer takes over.
		Inject: func(ctx context.Context, l *Lab, h string) error { return l.Partition(ctx, h) }},
}

// FaultByName finds a fault.
func FaultByName(name string) (Fault, bool) {
	for _, f := range Faults {
		if f.Name == name {
			return f, true
		}
	}
	return Fault{}, false
}

// Hooks let the demo watch a scenario as it runs.
type Hooks struct {
	// Phase is told each step ("injecting ...", "VIP moved ...").
	Phase func(msg string)
	// LoadStarted receives the running load generator.
	LoadStarted func(*Load)
	// Writers per path (VIP and HAProxy); default 1.
	Writers int
	// BeforeRecover, when set, runs once the writes are back on the new
	// writer, with the fault still in place (the old writer still down),
	// given the acknowledged writes; its error fails the run.
	BeforeRecover func(ctx context.Context, to string, acked []string) error
}

// Result is the outcome of one failover run.
type Result struct {
	Fault    string
	From, To string
	// VIPMoved is the time from injection until the VIP was on To;
	// WritesBack until writes succeeded on To through both paths.
	VIPMoved, WritesBack time.Duration
	// MaxGap is the longest window without any successful write (the
	// write-unavailability window); VIPGap and ProxyGap per path.
	MaxGap, VIPGap, ProxyGap time.Duration
	// Promotion is how long notify's MASTER run on To took (fence the
	// peer, gate, open writes), from its own step log.
	Promotion time.Duration
	Acked     int
	// Lost counts acknowledged writes missing on a node after recovery;
	// LateAcks the writes From acknowledged after To acknowledged one.
	Lost, LateAcks int
	Idle           map[string]int
	// Sampler covers the fault and the failover, RecoverySampler undoing
	// the fault until the lab is clean again.
	Sampler, RecoverySampler SamplerReport
}

func (r Result) String() string {
	return fmt.Sprintf("%-16s %s→%s  window %6.2fs (VIP path %.2fs, HAProxy path %.2fs)  VIP moved after %.2fs, promotion %.2fs, writes back after %.2fs  acked %d (lost %d, late %d)  both-writable samples %d/%d (recovery %d/%d)  idle conns %v",
		r.Fault, r.From, r.To, r.MaxGap.Seconds(), r.VIPGap.Seconds(), r.ProxyGap.Seconds(),
		r.VIPMoved.Seconds(), r.Promotion.Seconds(), r.WritesBack.Seconds(), r.Acked, r.Lost, r.LateAcks, len(r.Sampler.BothWritable), r.Sampler.Samples,
		len(r.RecoverySampler.BothWritable), r.RecoverySampler.Samples, r.Idle)
}

func (h Hooks) phase(format string, a ...any) {
	if h.Phase != nil {
		h.Phase(fmt.Sprintf(format, a...))
	}
}

// RunFailover runs one fault against the current VIP holder under write
// load, waits for the VIP and the writes to move to the peer, recovers the
// lab, and verifies: every acknowledged write on both nodes, identical
// tables, replication healthy, one VIP, never two writable nodes (unless the
// fault is known to cause it today, which is then only reported), and no
// write acknowledged by the old writer once the new one acknowledged one.
func (l *Lab) RunFailover(ctx context.Context, f Fault, hooks Hooks) (res Result, err error) {
	res.Fault = f.Name
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		return res, err
	}
	from, err := l.Holder(ctx)
	if err != nil {
		return res, err
	}
	to := l.Nodes[from].Peer
	res.From, res.To = from, to
	sampler, err := l.StartSampler(ctx)
	if err != nil {
		return res, err
	}
	defer func() {
		if sampler != nil {
			sampler.Stop()
		}
	}()
	ld, err := l.StartLoad(ctx, LoadOptions{IdleVIP: 5, IdleProxy: 5, Writers: hooks.Writers})
	if err != nil {
		return res, err
	}
	loadStopped := false
	defer func() {
		if !loadStopped {
			_, _ = ld.Stop()
		}
	}()
	if hooks.LoadStarted != nil {
		hooks.LoadStarted(ld)
	}
	hooks.phase("writes flowing through the VIP and HAProxy to %s", from)
	if err := sleep(ctx, 1500*time.Millisecond); err != nil {
		return res, err
	}

	hooks.phase("FAULT: %s (%s)", f.Desc, from)
	t0 := time.Now()
	if err := f.Inject(ctx, l, from); err != nil {
		return res, fmt.Errorf("injecting %s: %w", f.Name, err)
	}
	if err := l.WaitHolder(ctx, to, 30*time.Second); err != nil {
		return res, fmt.Errorf("after %s: %w", f.Name, err)
	}
	res.VIPMoved = time.Since(t0)
	hooks.phase("VIP moved to %s after %.2fs", to, res.VIPMoved.Seconds())
	if err := ld.WaitWrites(ctx, int(l.Nodes[to].DB.Opts.ServerID), 30*time.Second); err != nil {
		return res, fmt.Errorf("after %s: %w", f.Name, err)
	}
	res.WritesBack = time.Since(t0)
	res.Promotion = promotionTook(l.Nodes[to].NotifyLog, t0)
	hooks.phase("writes succeed on %s through both paths after %.2fs", to, res.WritesBack.Seconds())
	if err := sleep(ctx, time.Second); err != nil {
		return res, err
	}
	lr, err := ld.Stop()
	loadStopped = true
	if err != nil {
		return res, err
	}
	res.MaxGap, res.VIPGap, res.ProxyGap = lr.MaxGap(), lr.PathGap("vip"), lr.PathGap("proxy")
	res.Acked, res.Idle = len(lr.Acked), lr.Summary.Idle

	res.Sampler = sampler.Stop()
	var berr error
	if hooks.BeforeRecover != nil {
		berr = hooks.BeforeRecover(ctx, to, lr.Acked)
	}
	if sampler, err = l.StartSampler(ctx); err != nil {
		return res, err
	}
	hooks.phase("recovering %s", from)
	if f.Undo != nil {
		if err := f.Undo(ctx, l, from); err != nil {
			return res, err
		}
	}
	if err := l.Recover(ctx, 90*time.Second); err != nil {
		return res, err
	}
	res.RecoverySampler = sampler.Stop()
	sampler = nil
	hooks.phase("recovered: %s holds the VIP, %s is a standby again", to, from)

	verr := errors.Join(berr, l.VerifyAll(ctx, lr.Acked), l.lateAcksErr(lr.Acks, from, to))
	res.LateAcks = len(LateAcks(lr.Acks, int(l.Nodes[from].DB.Opts.ServerID), int(l.Nodes[to].DB.Opts.ServerID)))
	if n, err := l.LostAcked(ctx, lr.Acked); err == nil {
		res.Lost = n
	}
	if n := len(res.Sampler.BothWritable); n > 0 {
		verr = errors.Join(verr, fmt.Errorf("both nodes writable in %d of %d samples, first at %s",
			n, res.Sampler.Samples, res.Sampler.BothWritable[0].Format("15:04:05.000")))
	}
	if n := len(res.RecoverySampler.BothWritable); n > 0 {
		// A known race of the stand-in is a failure with cmd/notify.
		if f.RecoveryRace == "" || !l.Opts.StandIn {
			verr = errors.Join(verr, fmt.Errorf("both nodes writable in %d of %d samples while recovering, first at %s",
				n, res.RecoverySampler.Samples, res.RecoverySampler.BothWritable[0].Format("15:04:05.000")))
		} else {
			hooks.phase("KNOWN GAP: both nodes writable in %d of %d samples while recovering (%s)",
				n, res.RecoverySampler.Samples, f.RecoveryRace)
		}
	}
	if len(lr.Errors) > 0 {
		verr = errors.Join(verr, fmt.Errorf("load generator errors: %s", strings.Join(lr.Errors, "; ")))
	}
	return res, verr
}

// promotionTook reads how long the last promotion recorded in a notify log
// after since took (its "step done ... step=promote took=…" line); 0 when
// none is there.
func promotionTook(notifyLog string, since time.Time) time.Duration {
	b, err := os.ReadFile(notifyLog)
	if err != nil {
		return 0
	}
	var took time.Duration
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `msg="step done"`) || !strings.Contains(line, " step=promote ") {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		t, err := time.Parse(time.RFC3339Nano, kv["time"])
		if err != nil || t.Before(since) {
			continue
		}
		if d, err := time.ParseDuration(kv["took"]); err == nil {
			took = d
		}
	}
	return took
}
