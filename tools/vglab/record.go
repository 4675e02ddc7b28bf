package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vipguard/vipguard/lab"
	"github.com/vipguard/vipguard/lab/loadev"
)

// Sampling of a run for its picture: the load generator ticks every
// 100 ms, polled twice as often so that none is missed; the pair is
// sampled about every 100 ms (slower while a node does not answer).
const (
	tickPoll      = 50 * time.Millisecond
	stateEvery    = 100 * time.Millisecond
	stateTimeout  = 300 * time.Millisecond
	maxRecordTime = 15 * time.Minute // bounds a recorder nobody stopped
)

// recorder collects one failover run for its picture, through the run's
// hooks: the load generator's ticks, a sample of the pair (VIP holder, and
// per node keepalived's state and read_only), and the runner's phases.
type recorder struct {
	l    *lab.Lab
	stop chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	ticks  []loadev.Event
	states []sampled
	phases []phased
}

type sampled struct {
	at           time.Time
	holder       string
	keepalived   map[string]string
	readOnly     map[string]string
	holderFailed bool
}

type phased struct {
	at  time.Time
	msg string
}

func newRecorder(l *lab.Lab) *recorder {
	return &recorder{l: l, stop: make(chan struct{})}
}

// hooks returns h with the recorder's hooks run before h's own.
func (r *recorder) hooks(ctx context.Context, h lab.Hooks) lab.Hooks {
	phase, started := h.Phase, h.LoadStarted
	h.Phase = func(m string) {
		r.mu.Lock()
		r.phases = append(r.phases, phased{time.Now(), m})
		r.mu.Unlock()
		if phase != nil {
			phase(m)
		}
	}
	h.LoadStarted = func(ld *lab.Load) {
		r.start(ctx, ld)
		if started != nil {
			started(ld)
		}
	}
	return h
}

// start begins recording once the load runs; the picture starts there.
func (r *recorder) start(ctx context.Context, ld *lab.Load) {
	dbs := map[string]*sql.DB{}
	for _, n := range pairNodes {
		db, err := r.l.Node(n).DB.RootDB()
		if err != nil {
			continue // that node's read_only shows as no answer
		}
		// A read stuck on a frozen server keeps its connection until its
		// deadline; the next sample needs another.
		db.SetMaxOpenConns(4)
		dbs[n] = db
	}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		var last float64
		r.every(ctx, tickPoll, func() {
			if e := ld.Last(); e.T != last {
				last = e.T
				r.mu.Lock()
				r.ticks = append(r.ticks, e)
				r.mu.Unlock()
			}
		})
	}()
	go func() {
		defer r.wg.Done()
		defer func() {
			for _, db := range dbs {
				db.Close()
			}
		}()
		r.every(ctx, stateEvery, func() {
			s := r.sample(ctx, dbs)
			r.mu.Lock()
			r.states = append(r.states, s)
			r.mu.Unlock()
		})
	}()
}

// every runs f every d until finish, ctx's end, or maxRecordTime.
func (r *recorder) every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for range int(maxRecordTime / d) {
		f()
		select {
		case <-r.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *recorder) sample(ctx context.Context, dbs map[string]*sql.DB) sampled {
	s := sampled{at: time.Now(), keepalived: map[string]string{}, readOnly: map[string]string{}}
	type ro struct{ node, v string }
	ch := make(chan ro, len(pairNodes))
	for _, n := range pairNodes {
		go func() {
			v := "?"
			if db := dbs[n]; db != nil {
				qctx, cancel := context.WithTimeout(ctx, stateTimeout)
				var on int
				if err := db.QueryRowContext(qctx, "SELECT @@read_only").Scan(&on); err == nil {
					v = map[bool]string{true: "ON", false: "OFF"}[on != 0]
				}
				cancel()
			}
			ch <- ro{n, v}
		}()
	}
	h, err := r.l.Holder(ctx)
	s.holder, s.holderFailed = h, err != nil
	for _, n := range pairNodes {
		s.keepalived[n] = r.l.KeepalivedState(n)
	}
	for range pairNodes {
		v := <-ch
		s.readOnly[v.node] = v.v
	}
	return s
}

// finish stops recording.
func (r *recorder) finish() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

// timeline is what was recorded of the run of f that ended with res and
// err, in seconds from the fault. run labels the run ("run 2 of 5").
func (r *recorder) timeline(f lab.Fault, res lab.Result, err error, run string) timeline {
	r.mu.Lock()
	defer r.mu.Unlock()
	tl := timeline{Fault: f.Name, Desc: f.Desc, Run: run, From: res.From, To: res.To,
		Window: res.MaxGap.Seconds(), VIPGap: res.VIPGap.Seconds(), ProxyGap: res.ProxyGap.Seconds()}
	if err != nil {
		tl.Failed = strings.SplitN(err.Error(), "\n", 2)[0]
	}
	// The moments come from RunFailover's phase messages (lab/scenario.go):
	// "FAULT: ...", "recovering ...", "recovered: ...". A renamed phase
	// only loses its marker; the fault falls back to the first sample.
	var fault, recovering, recovered time.Time
	for _, p := range r.phases {
		switch {
		case strings.HasPrefix(p.msg, "FAULT:"):
			fault = p.at
		case strings.HasPrefix(p.msg, "recovering"):
			recovering = p.at
		case strings.HasPrefix(p.msg, "recovered"):
			recovered = p.at
		}
	}
	if fault.IsZero() { // the run ended before its fault: show what there is
		fault = time.Now()
		if len(r.states) > 0 {
			fault = r.states[0].at
		}
	}
	rel := func(t time.Time) float64 { return t.Sub(fault).Seconds() }
	unix := func(s float64) time.Time { return time.Unix(0, int64(s*1e9)) }

	for i := 1; i < len(r.ticks); i++ {
		a, b := r.ticks[i-1], r.ticks[i]
		if dt := b.T - a.T; dt > 0 {
			tl.Rates = append(tl.Rates, rate{From: rel(unix(a.T)), To: rel(unix(b.T)),
				VIP: float64(b.OK["vip"]-a.OK["vip"]) / dt, Proxy: float64(b.OK["proxy"]-a.OK["proxy"]) / dt})
		}
	}
	if n := len(r.ticks); n > 0 && r.ticks[n-1].MaxGapStart > 0 {
		tl.GapStart, tl.GapKnown = rel(unix(r.ticks[n-1].MaxGapStart)), true
	}
	var promoted time.Time
	for _, s := range r.states {
		holder := s.holder
		if s.holderFailed {
			holder = "?"
		}
		tl.States = append(tl.States, nodeState{T: rel(s.at), Holder: holder, Keepalived: s.keepalived, ReadOnly: s.readOnly})
		if promoted.IsZero() && res.To != "" && s.at.After(fault) && s.readOnly[res.To] == "OFF" {
			promoted = s.at
		}
	}

	tl.Marks = append(tl.Marks, mark{0, "fault: " + f.Name})
	if res.VIPMoved > 0 {
		tl.Marks = append(tl.Marks, mark{res.VIPMoved.Seconds(), fmt.Sprintf("VIP on %s +%.2fs", res.To, res.VIPMoved.Seconds())})
	}
	if !promoted.IsZero() {
		tl.Marks = append(tl.Marks, mark{rel(promoted), fmt.Sprintf("%s writable +%.2fs", res.To, rel(promoted))})
	}
	if res.WritesBack > 0 {
		tl.Marks = append(tl.Marks, mark{res.WritesBack.Seconds(), fmt.Sprintf("writes on %s, both paths +%.2fs", res.To, res.WritesBack.Seconds())})
	}
	if !recovering.IsZero() {
		tl.Marks = append(tl.Marks, mark{rel(recovering), "recovering " + res.From})
	}
	if !recovered.IsZero() {
		tl.Marks = append(tl.Marks, mark{rel(recovered), fmt.Sprintf("recovered +%.1fs", rel(recovered))})
	}

	var first, last time.Time
	widen := func(t time.Time) {
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	for _, e := range r.ticks {
		widen(unix(e.T))
	}
	for _, s := range r.states {
		widen(s.at)
	}
	if !recovered.IsZero() {
		widen(recovered)
	}
	if !first.IsZero() {
		tl.Start, tl.End = rel(first), rel(last)
	}
	return tl
}

// writePicture renders tl into path, creating its directory.
func writePicture(path string, tl timeline) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("writing picture: %w", err)
		}
	}
	if err := os.WriteFile(path, svgTimeline(tl), 0o644); err != nil {
		return fmt.Errorf("writing picture: %w", err)
	}
	return nil
}
