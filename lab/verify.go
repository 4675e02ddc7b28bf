package lab

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Sampler polls @@read_only on both nodes about every 100 ms while a
// scenario runs: at most one node may ever be writable. A node that does
// not answer (down, frozen) counts as not writable: no client can write to
// it either.
type Sampler struct {
	stop chan struct{}
	done chan struct{}

	mu           sync.Mutex
	samples      int
	bothWritable []time.Time
	noAnswer     map[string]int
}

// SamplerReport is what a sampler saw.
type SamplerReport struct {
	Samples      int
	BothWritable []time.Time
	NoAnswer     map[string]int
}

// Interval between samples, and the deadline of each read.
const (
	sampleEvery   = 100 * time.Millisecond
	sampleTimeout = 300 * time.Millisecond
	// maxSamplerRun bounds a sampler nobody stopped.
	maxSamplerRun = 15 * time.Minute
)

// StartSampler starts sampling until Stop.
func (l *Lab) StartSampler(ctx context.Context) (*Sampler, error) {
	dbs := map[string]*sql.DB{}
	for _, name := range []string{"db1", "db2"} {
		db, err := l.Nodes[name].DB.RootDB()
		if err != nil {
			return nil, err
		}
		// A read stuck on a frozen server keeps its connection until its
		// deadline; the next sample needs another.
		db.SetMaxOpenConns(4)
		dbs[name] = db
	}
	s := &Sampler{stop: make(chan struct{}), done: make(chan struct{}), noAnswer: map[string]int{}}
	go func() {
		defer close(s.done)
		defer func() {
			for _, db := range dbs {
				db.Close()
			}
		}()
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for range int(maxSamplerRun / sampleEvery) {
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s.sample(ctx, dbs)
		}
	}()
	return s, nil
}

func (s *Sampler) sample(ctx context.Context, dbs map[string]*sql.DB) {
	at := time.Now()
	type res struct {
		name     string
		writable bool
		err      error
	}
	ch := make(chan res, len(dbs))
	for name, db := range dbs {
		go func() {
			ro, err := readOnly(ctx, db, sampleTimeout)
			ch <- res{name, err == nil && !ro, err}
		}()
	}
	writable := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for range dbs {
		r := <-ch
		if r.err != nil {
			s.noAnswer[r.name]++
		}
		if r.writable {
			writable++
		}
	}
	s.samples++
	if writable > 1 {
		s.bothWritable = append(s.bothWritable, at)
	}
}

// Stop ends sampling and returns the report.
func (s *Sampler) Stop() SamplerReport {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	na := map[string]int{}
	for k, v := range s.noAnswer {
		na[k] = v
	}
	return SamplerReport{Samples: s.samples, BothWritable: append([]time.Time(nil), s.bothWritable...), NoAnswer: na}
}

// VerifyOneVIP checks that exactly one node holds the VIP.
func (l *Lab) VerifyOneVIP(ctx context.Context) error {
	h, err := l.Holder(ctx)
	if err != nil {
		return err
	}
	if h != "db1" && h != "db2" {
		return fmt.Errorf("VIP held by %q, want exactly one node", h)
	}
	return nil
}

// VerifyReplication checks that both nodes replicate with both threads
// running and no error recorded.
func (l *Lab) VerifyReplication(ctx context.Context) error {
	var errs []error
	for _, name := range []string{"db1", "db2"} {
		if err := l.replicationHealthy(ctx, name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Sync waits until both nodes have the same @@gtid_binlog_pos: with
// log_slave_updates each logs what it applied, so equal positions mean each
// has everything the other wrote. (MASTER_GTID_WAIT would not do: it waits
// on gtid_slave_pos, which never holds a node's own domain, so a node that
// wrote before its crash can wait forever for its own GTIDs.)
func (l *Lab) Sync(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	pos := map[string]string{}
	for time.Now().Before(deadline) {
		for _, name := range []string{"db1", "db2"} {
			p, err := l.Nodes[name].DB.Query(ctx, "SELECT @@gtid_binlog_pos")
			if err != nil {
				return err
			}
			pos[name] = p
		}
		if pos["db1"] == pos["db2"] {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("nodes not in sync within %s: db1 gtid_binlog_pos %q, db2 %q", limit, pos["db1"], pos["db2"])
}

// VerifyIdentical checks that lab_writes has the same row count and
// CHECKSUM TABLE on both nodes (after Sync).
func (l *Lab) VerifyIdentical(ctx context.Context) error {
	return l.verifyIdentical(ctx, "db1", "db2")
}

// verifyIdentical compares lab_writes on node a and node b.
func (l *Lab) verifyIdentical(ctx context.Context, a, b string) error {
	got := map[string]tableSum{}
	for _, name := range []string{a, b} {
		s, err := l.tableSum(ctx, name)
		if err != nil {
			return err
		}
		got[name] = s
	}
	if got[a] != got[b] {
		return fmt.Errorf("lab_writes differs: %s has %s rows (checksum %s), %s %s rows (checksum %s)",
			a, got[a].count, got[a].checksum, b, got[b].count, got[b].checksum)
	}
	return nil
}

type tableSum struct{ count, checksum string }

// tableSum reads lab_writes' row count and CHECKSUM TABLE on a node.
func (l *Lab) tableSum(ctx context.Context, name string) (tableSum, error) {
	db, err := l.Nodes[name].DB.RootDB()
	if err != nil {
		return tableSum{}, err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var s tableSum
	var table string
	err = db.QueryRowContext(qctx, "SELECT COUNT(*) FROM vgtest.lab_writes").Scan(&s.count)
	if err == nil {
		err = db.QueryRowContext(qctx, "CHECKSUM TABLE vgtest.lab_writes").Scan(&table, &s.checksum)
	}
	if err != nil {
		return tableSum{}, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

// VerifyAcked checks that every acknowledged key is present on both nodes.
func (l *Lab) VerifyAcked(ctx context.Context, keys []string) error {
	return l.verifyAckedOn(ctx, keys, "db1", "db2")
}

func (l *Lab) verifyAckedOn(ctx context.Context, keys []string, names ...string) error {
	lost, err := l.ackedMissing(ctx, keys, names...)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		if missing := lost[name]; len(missing) > 0 {
			show := missing
			if len(show) > 5 {
				show = show[:5]
			}
			errs = append(errs, fmt.Errorf("%s lacks %d of %d acknowledged writes, e.g. %q", name, len(missing), len(keys), show))
		}
	}
	return errors.Join(errs...)
}

// ackedMissing returns, per node, the acknowledged keys it lacks.
func (l *Lab) ackedMissing(ctx context.Context, keys []string, names ...string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, name := range names {
		present, err := l.keys(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if !present[k] {
				out[name] = append(out[name], k)
			}
		}
	}
	return out, nil
}

// LostAcked counts the acknowledged keys missing on a node of the pair.
func (l *Lab) LostAcked(ctx context.Context, keys []string) (int, error) {
	lost, err := l.ackedMissing(ctx, keys, "db1", "db2")
	if err != nil {
		return 0, err
	}
	seen := map[string]bool{}
	for _, ks := range lost {
		for _, k := range ks {
			seen[k] = true
		}
	}
	return len(seen), nil
}

func (l *Lab) keys(ctx context.Context, name string) (map[string]bool, error) {
	db, err := l.Nodes[name].DB.RootDB()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows, err := db.QueryContext(qctx, "SELECT k FROM vgtest.lab_writes")
	if err != nil {
		return nil, fmt.Errorf("%s: reading keys: %w", name, err)
	}
	defer rows.Close()
	got := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		got[k] = true
	}
	return got, rows.Err()
}

// VerifyAll runs every end-of-scenario verifier after syncing the nodes.
func (l *Lab) VerifyAll(ctx context.Context, acked []string) error {
	if err := l.Sync(ctx, 30*time.Second); err != nil {
		return err
	}
	return errors.Join(l.VerifyOneVIP(ctx), l.VerifyReplication(ctx), l.VerifyIdentical(ctx), l.VerifyAcked(ctx, acked))
}

// LateAcks returns the writes the server oldID acknowledged after the
// first one newID acknowledged: as the clients saw it, two servers took
// writes at once. After a failover from oldID to newID there must be none.
func LateAcks(acks []Ack, oldID, newID int) []Ack {
	var first time.Time
	for _, a := range acks {
		if a.Server == newID && (first.IsZero() || a.At.Before(first)) {
			first = a.At
		}
	}
	if first.IsZero() {
		return nil
	}
	var late []Ack
	for _, a := range acks {
		if a.Server == oldID && a.At.After(first) {
			late = append(late, a)
		}
	}
	return late
}

// lateAcksErr describes LateAcks for a failover from one node to another.
func (l *Lab) lateAcksErr(acks []Ack, from, to string) error {
	late := LateAcks(acks, int(l.Nodes[from].DB.Opts.ServerID), int(l.Nodes[to].DB.Opts.ServerID))
	if len(late) == 0 {
		return nil
	}
	return fmt.Errorf("%s acknowledged %d writes after %s had taken over, e.g. %q at %s",
		from, len(late), to, late[0].Key, late[0].At.Format("15:04:05.000"))
}
