package ops

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
)

// ProbeTableDDL is the table the write probe inserts into; the probe's
// account needs INSERT, SELECT and DELETE on it, and nothing that writes
// through read_only (no SUPER, READ_ONLY ADMIN, CONNECTION ADMIN): the
// probe must see what an application sees.
const ProbeTableDDL = `CREATE TABLE vipguard.switchover_probe (
  run VARCHAR(64) NOT NULL, seq INT NOT NULL, server_id INT UNSIGNED NOT NULL,
  at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (run, seq))`

// DefaultProbeTable is where the probe writes unless told otherwise.
const DefaultProbeTable = "vipguard.switchover_probe"

// Bounds on the probe: one small write per ProbeEvery, each under
// probeWriteTimeout, at most ProbeMaxWrites in all.
const (
	ProbeEvery        = 50 * time.Millisecond
	ProbeMaxWrites    = 20000
	probeWriteTimeout = time.Second
)

// ProbeOptions say where the probe writes.
type ProbeOptions struct {
	// Target is the VIP, with the probe account.
	Target probe.Target
	// Table is "db.table" (see ProbeTableDDL).
	Table string
}

var probeTableRE = regexp.MustCompile(`^[A-Za-z0-9_$]+\.[A-Za-z0-9_$]+$`)

// ValidProbeTable refuses a table name that is not db.table of safe
// characters (it is put into the statements).
func ValidProbeTable(t string) error {
	if !probeTableRE.MatchString(t) {
		return fmt.Errorf("probe table %q must be \"database.table\" of letters, digits, _ and $", t)
	}
	return nil
}

// ProbeResult is what the probe saw.
type ProbeResult struct {
	Run            string
	Acked, Failed  int
	FirstFailure   string
	MaxGap         time.Duration
	GapFrom, GapTo time.Time
	// Found is how many of the acknowledged rows the writer holds at the
	// end (-1: not counted); Lost = Acked - Found.
	Found     int
	CountErr  string
	Truncated bool // ProbeMaxWrites reached
}

// Probe writes through the VIP until stopped.
type Probe struct {
	o      ProbeOptions
	db     *sql.DB
	run    string
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	acks   []time.Time
	failed int
	first  string
	trunc  bool
}

// StartProbe checks that a first write succeeds, then keeps writing.
func StartProbe(ctx context.Context, o ProbeOptions) (*Probe, error) {
	if err := ValidProbeTable(o.Table); err != nil {
		return nil, err
	}
	o.Target.ConnectTimeout = max(o.Target.ConnectTimeout, 500*time.Millisecond)
	o.Target.QueryTimeout = max(o.Target.QueryTimeout, probeWriteTimeout)
	db, err := probe.Open(o.Target)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	p := &Probe{o: o, db: db, run: fmt.Sprintf("switchover-%d", time.Now().UnixNano()),
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := p.write(ctx, 0); err != nil {
		db.Close()
		return nil, fmt.Errorf("first write to %s through %s: %w", o.Table, o.Target, err)
	}
	p.acks = append(p.acks, time.Now())
	go p.loop()
	return p, nil
}

func (p *Probe) write(ctx context.Context, seq int) error {
	wctx, cancel := context.WithTimeout(ctx, probeWriteTimeout)
	defer cancel()
	_, err := p.db.ExecContext(wctx, "INSERT INTO "+quoteTable(p.o.Table)+" (run, seq, server_id) VALUES (?, ?, @@server_id)", p.run, seq)
	return err
}

func quoteTable(t string) string {
	db, tbl, _ := strings.Cut(t, ".")
	return "`" + db + "`.`" + tbl + "`"
}

func (p *Probe) loop() {
	defer close(p.done)
	t := time.NewTicker(ProbeEvery)
	defer t.Stop()
	for seq := 1; ; seq++ {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		if seq >= ProbeMaxWrites {
			p.mu.Lock()
			p.trunc = true
			p.mu.Unlock()
			<-p.stop
			return
		}
		err := p.write(context.Background(), seq)
		p.mu.Lock()
		if err == nil {
			p.acks = append(p.acks, time.Now())
		} else {
			p.failed++
			if p.first == "" {
				p.first = err.Error()
			}
		}
		p.mu.Unlock()
	}
}

// Stop ends the writes, counts what the writer holds of them, removes
// them, and reports.
func (p *Probe) Stop() ProbeResult {
	close(p.stop)
	<-p.done
	defer p.db.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := ProbeResult{Run: p.run, Acked: len(p.acks), Failed: p.failed, FirstFailure: p.first, Truncated: p.trunc, Found: -1}
	r.MaxGap, r.GapFrom, r.GapTo = LongestGap(p.acks)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var n int
	// Each write had its own seq: a row per acknowledged write.
	if err := p.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+quoteTable(p.o.Table)+" WHERE run = ?", p.run).Scan(&n); err != nil {
		r.CountErr = err.Error()
	} else {
		r.Found = n
		_, _ = p.db.ExecContext(ctx, "DELETE FROM "+quoteTable(p.o.Table)+" WHERE run = ?", p.run)
	}
	return r
}

// LongestGap is the longest time between two acknowledged writes: the
// write-unavailability window.
func LongestGap(acks []time.Time) (gap time.Duration, from, to time.Time) {
	for i := 1; i < len(acks); i++ {
		if d := acks[i].Sub(acks[i-1]); d > gap {
			gap, from, to = d, acks[i-1], acks[i]
		}
	}
	return gap, from, to
}

// String sums the probe up in one line.
func (r ProbeResult) String() string {
	s := fmt.Sprintf("write-unavailability window %s (longest gap between acknowledged writes", r.MaxGap.Round(time.Millisecond))
	if !r.GapFrom.IsZero() {
		s += ", " + r.GapFrom.Format("15:04:05.000") + " to " + r.GapTo.Format("15:04:05.000")
	}
	s += "); " + strconv.Itoa(r.Acked) + " writes acknowledged, " + strconv.Itoa(r.Failed) + " failed"
	switch {
	case r.Found >= 0 && r.Found < r.Acked:
		s += fmt.Sprintf("; %d ACKNOWLEDGED WRITES MISSING on the writer", r.Acked-r.Found)
	case r.Found >= 0:
		s += "; all found on the writer"
	default:
		s += "; not counted: " + r.CountErr
	}
	if r.Truncated {
		s += fmt.Sprintf(" (stopped writing after %d)", ProbeMaxWrites)
	}
	return s
}
