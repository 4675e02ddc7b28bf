// Command vgload is the failover lab's client: run inside the lab's client
// namespace (ip netns exec), it writes through the VIP and through HAProxy
// with unique keys, records every acknowledged write, measures the longest
// window without a successful write, holds idle long-lived connections, and
// runs a slow autocommit statement on demand.
//
// It reads commands on stdin ("slow SECONDS [vip|proxy|direct]", "slow-retry
// SECONDS", "stop"; EOF means stop) and prints one JSON object per line on
// stdout: "tick" events while it runs, a "slow" event per slow statement,
// and a final "summary". The acknowledged writes go to --acked when it
// stops, one per line: the key, the server_id that acknowledged it (from
// the INSERT's own RETURNING, so it is the server that committed) and the
// acknowledgement's time in Unix nanoseconds.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/vipguard/vipguard/lab/loadev"
)

type options struct {
	vip, proxy    string
	direct        string
	user, pwFile  string
	db, runID     string
	writers       int
	idleVIP       int
	idleProxy     int
	pause, tick   time.Duration
	stmtTimeout   time.Duration
	maxDuration   time.Duration
	ackedFile     string
	password      string
	connectTimout time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.vip, "vip", "", "VIP address host:port (writes path \"vip\")")
	flag.StringVar(&o.proxy, "proxy", "", "HAProxy writer address host:port (writes path \"proxy\")")
	flag.StringVar(&o.direct, "direct", "", "a node's own address host:port, for slow statements only (path \"direct\")")
	flag.StringVar(&o.user, "user", "app", "MySQL user")
	flag.StringVar(&o.pwFile, "password-file", "", "file holding the MySQL password")
	flag.StringVar(&o.db, "db", "vgtest", "database holding lab_writes")
	flag.StringVar(&o.runID, "run-id", "", "prefix of every key (unique per run)")
	flag.IntVar(&o.writers, "writers", 1, "writers per path")
	flag.IntVar(&o.idleVIP, "idle-vip", 0, "idle connections held through the VIP")
	flag.IntVar(&o.idleProxy, "idle-proxy", 0, "idle connections held through HAProxy")
	flag.DurationVar(&o.pause, "pause", 10*time.Millisecond, "pause between a writer's writes")
	flag.DurationVar(&o.tick, "tick", 250*time.Millisecond, "interval of tick events")
	flag.DurationVar(&o.stmtTimeout, "stmt-timeout", time.Second, "deadline of each write")
	flag.DurationVar(&o.connectTimout, "connect-timeout", 500*time.Millisecond, "dial deadline")
	flag.DurationVar(&o.maxDuration, "max-duration", 10*time.Minute, "stop after this long whatever happens")
	flag.StringVar(&o.ackedFile, "acked", "", "write acknowledged keys here on stop")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "vgload: error: %v\n", err)
		os.Exit(1)
	}
}

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

// stats is shared by the writers; all fields under mu.
type stats struct {
	mu          sync.Mutex
	ok, errs    map[string]int64
	server      map[string]int
	lastErr     map[string]string
	lastOK      time.Time
	pathLastOK  map[string]time.Time
	maxGap      time.Duration
	maxGapStart time.Time
	pathMaxGap  map[string]time.Duration
	acked       []ack
}

// ack is one acknowledged write: which server committed it, and when the
// client learned so.
type ack struct {
	key    string
	server int
	at     time.Time
}

func newStats() *stats {
	return &stats{ok: map[string]int64{}, errs: map[string]int64{}, server: map[string]int{},
		lastErr: map[string]string{}, pathLastOK: map[string]time.Time{}, pathMaxGap: map[string]time.Duration{}}
}

func (s *stats) success(path, key string, serverID int, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok[path]++
	s.server[path] = serverID
	s.acked = append(s.acked, ack{key: key, server: serverID, at: at})
	if !s.lastOK.IsZero() && at.Sub(s.lastOK) > s.maxGap {
		s.maxGap, s.maxGapStart = at.Sub(s.lastOK), s.lastOK
	}
	if at.After(s.lastOK) {
		s.lastOK = at
	}
	if l := s.pathLastOK[path]; !l.IsZero() && at.Sub(l) > s.pathMaxGap[path] {
		s.pathMaxGap[path] = at.Sub(l)
	}
	if at.After(s.pathLastOK[path]) {
		s.pathLastOK[path] = at
	}
}

func (s *stats) failure(path string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs[path]++
	s.lastErr[path] = oneLine(err.Error())
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

func (s *stats) event(typ string) loadev.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := loadev.Event{Type: typ, T: now(), OK: map[string]int64{}, Err: map[string]int64{}, Server: map[string]int{},
		LastErr: map[string]string{}, PathMaxGap: map[string]float64{}}
	for k, v := range s.ok {
		e.OK[k] = v
	}
	for k, v := range s.errs {
		e.Err[k] = v
	}
	for k, v := range s.server {
		e.Server[k] = v
	}
	for k, v := range s.lastErr {
		e.LastErr[k] = v
	}
	gap, maxGap, start := time.Duration(0), s.maxGap, s.maxGapStart
	if !s.lastOK.IsZero() {
		gap = time.Since(s.lastOK)
		if gap > maxGap { // an open window counts too
			maxGap, start = gap, s.lastOK
		}
	}
	e.Gap, e.MaxGap = gap.Seconds(), maxGap.Seconds()
	if !start.IsZero() {
		e.MaxGapStart = float64(start.UnixNano()) / 1e9
	}
	for k, v := range s.pathMaxGap {
		e.PathMaxGap[k] = v.Seconds()
	}
	e.Acked = len(s.acked)
	return e
}

type output struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (o *output) emit(e loadev.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.enc.Encode(e)
}

func (o options) dsn(addr string) (string, error) {
	c := mysql.NewConfig()
	c.User, c.Passwd = o.user, o.password
	c.Net, c.Addr, c.DBName = "tcp", addr, o.db
	c.Timeout = o.connectTimout
	c.ReadTimeout = o.stmtTimeout + 10*time.Second // the context is the real bound
	c.WriteTimeout = o.stmtTimeout + 10*time.Second
	c.InterpolateParams = true
	return c.FormatDSN(), nil
}

func run(o options) error {
	if o.vip == "" && o.proxy == "" {
		return errors.New("give --vip and/or --proxy")
	}
	if o.runID == "" {
		o.runID = strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if o.pwFile != "" {
		b, err := os.ReadFile(o.pwFile)
		if err != nil {
			return fmt.Errorf("reading password: %w", err)
		}
		o.password = strings.TrimSpace(string(b))
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.maxDuration)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	out := &output{enc: json.NewEncoder(os.Stdout)}
	st := newStats()
	paths := map[string]string{}
	if o.vip != "" {
		paths["vip"] = o.vip
	}
	if o.proxy != "" {
		paths["proxy"] = o.proxy
	}

	// Idle connections first, so they are old by the time a fault hits.
	var idle []*idleConn
	for path, n := range map[string]int{"vip": o.idleVIP, "proxy": o.idleProxy} {
		for i := 0; i < n && paths[path] != ""; i++ {
			c, err := openIdle(ctx, o, paths[path])
			if err != nil {
				out.emit(loadev.Event{Type: "error", T: now(), Msg: fmt.Sprintf("idle connection %s/%d: %v", path, i, err)})
				continue
			}
			idle = append(idle, c)
		}
	}

	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for path, addr := range paths {
		dsn, _ := o.dsn(addr)
		for w := range o.writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				writer(wctx, o, dsn, path, fmt.Sprintf("%s-%s-%d", o.runID, path, w), st)
			}()
		}
	}

	// Commands on stdin.
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- strings.TrimSpace(sc.Text())
		}
		close(cmds)
	}()
	var slowWG sync.WaitGroup
	ticker := time.NewTicker(o.tick)
	defer ticker.Stop()
	slowSeq := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-ticker.C:
			out.emit(st.event("tick"))
		case c, ok := <-cmds:
			if !ok || c == "stop" {
				break loop
			}
			secs, retry := strings.CutPrefix(c, "slow-retry ")
			found := retry
			if !found {
				secs, found = strings.CutPrefix(c, "slow ")
			}
			if found {
				n, addr, err := slowArgs(o, secs)
				if err != nil {
					out.emit(loadev.Event{Type: "error", T: now(), Msg: fmt.Sprintf("bad command %q: %v", c, err)})
					continue
				}
				slowSeq++
				key := fmt.Sprintf("%s-slow-%d", o.runID, slowSeq)
				slowWG.Add(1)
				go func() {
					defer slowWG.Done()
					out.emit(slow(ctx, o, addr, key, n, retry, st))
				}()
				continue
			}
			out.emit(loadev.Event{Type: "error", T: now(), Msg: fmt.Sprintf("unknown command %q", c)})
		}
	}
	wcancel()
	wg.Wait()
	// The write-unavailability figures end when the writers stop: a slow
	// statement still retrying must not stretch them.
	gaps := st.event("summary")
	slowWG.Wait()

	sum := st.event("summary")
	sum.Gap, sum.MaxGap, sum.MaxGapStart, sum.PathMaxGap = gaps.Gap, gaps.MaxGap, gaps.MaxGapStart, gaps.PathMaxGap
	sum.Idle = map[string]int{}
	for _, c := range idle {
		sum.Idle[c.probe()]++
		c.close()
	}
	if o.ackedFile != "" {
		var b strings.Builder
		st.mu.Lock()
		for _, a := range st.acked {
			fmt.Fprintf(&b, "%s %d %d\n", a.key, a.server, a.at.UnixNano())
		}
		st.mu.Unlock()
		if err := os.WriteFile(o.ackedFile, []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("writing acked keys: %w", err)
		}
	}
	out.emit(sum)
	return nil
}

// writer inserts one row per iteration with a key never used before, so a
// write whose acknowledgement was lost is never retried under the same key.
func writer(ctx context.Context, o options, dsn, path, keyPrefix string, st *stats) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		st.failure(path, err)
		return
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	// Bounded even when the lab forgets to stop it: max-duration / pause.
	limit := int(o.maxDuration/o.pause) + 1
	for seq := 0; seq < limit && ctx.Err() == nil; seq++ {
		key := fmt.Sprintf("%s-%d", keyPrefix, seq)
		sctx, cancel := context.WithTimeout(ctx, o.stmtTimeout)
		var id int
		err := db.QueryRowContext(sctx, "INSERT INTO lab_writes (k, path, server_id) VALUES (?, ?, @@server_id) RETURNING server_id", key, path).Scan(&id)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			st.failure(path, err)
			// A failed connection must not be reused: drop the pool's.
			db.SetMaxIdleConns(0)
			db.SetMaxIdleConns(1)
		} else {
			st.success(path, key, id, time.Now())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(o.pause):
		}
	}
}

// slowArgs reads "SECONDS [vip|proxy]": the sleep and the address to run
// it through (the VIP unless told otherwise or not given).
func slowArgs(o options, args string) (float64, string, error) {
	f := strings.Fields(args)
	if len(f) == 0 || len(f) > 2 {
		return 0, "", errors.New("want SECONDS [vip|proxy|direct]")
	}
	n, err := strconv.ParseFloat(f[0], 64)
	if err != nil || !(n > 0 && n <= 60) { // NaN too
		return 0, "", fmt.Errorf("seconds %q: want a number in (0, 60]", f[0])
	}
	path := "vip"
	if len(f) == 2 {
		path = f[1]
	}
	var addr string
	switch path {
	case "vip":
		addr = o.vip
		if addr == "" && len(f) == 1 {
			addr = o.proxy
		}
	case "proxy":
		addr = o.proxy
	case "direct":
		addr = o.direct
	default:
		return 0, "", fmt.Errorf("path %q: want vip, proxy or direct", path)
	}
	if addr == "" {
		return 0, "", fmt.Errorf("no address for path %q", path)
	}
	return n, addr, nil
}

// slow runs one autocommit INSERT ... SELECT that sleeps n seconds. With
// retry, a failed statement is retried as a plain INSERT of the same key, as
// an application does after "lost connection", until it succeeds or meets
// the original row (duplicate key: the first attempt had committed after
// all); either way the row is acknowledged.
func slow(ctx context.Context, o options, addr, key string, n float64, retry bool, st *stats) loadev.Event {
	dsn, _ := o.dsn(addr)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return loadev.Event{Type: "slow", T: now(), Msg: err.Error()}
	}
	defer db.Close()
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, time.Duration(n*float64(time.Second))+10*time.Second)
	defer cancel()
	var id int
	err = db.QueryRowContext(sctx, "INSERT INTO lab_writes (k, path, server_id) SELECT ?, 'slow', @@server_id FROM DUAL WHERE SLEEP(?) = 0 RETURNING server_id", key, n).Scan(&id)
	e := loadev.Event{Type: "slow", T: now(), Took: time.Since(start).Seconds()}
	if err != nil && retry && ctx.Err() == nil {
		e.FirstErr = oneLine(err.Error())
		id, err = retryInsert(ctx, o, addr, key, &e)
		e.Took = time.Since(start).Seconds()
	}
	if err != nil {
		e.Msg = oneLine(err.Error())
		return e
	}
	st.success("slow", key, id, time.Now())
	e.OKSlow, e.Msg = true, key
	return e
}

// retryInsert inserts key until that succeeds or meets the row already
// there (MySQL error 1062), for up to 30 s, on a fresh connection each time.
func retryInsert(ctx context.Context, o options, addr, key string, e *loadev.Event) (int, error) {
	dsn, _ := o.dsn(addr)
	var err error
	for range 300 {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		e.Retries++
		var id int
		id, err = func() (int, error) {
			db, err := sql.Open("mysql", dsn)
			if err != nil {
				return 0, err
			}
			defer db.Close()
			sctx, cancel := context.WithTimeout(ctx, o.stmtTimeout)
			defer cancel()
			var id int
			if err := db.QueryRowContext(sctx, "SELECT @@server_id").Scan(&id); err != nil {
				return 0, err
			}
			_, err = db.ExecContext(sctx, "INSERT INTO lab_writes (k, path, server_id) VALUES (?, 'slow', @@server_id)", key)
			return id, err
		}()
		var me *mysql.MySQLError
		switch {
		case err == nil:
			e.RetryResult = "ok"
			return id, nil
		case errors.As(err, &me) && me.Number == 1062:
			e.RetryResult = "duplicate"
			return id, nil
		}
		e.RetryResult = oneLine(err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, err
}

type idleConn struct {
	db   *sql.DB
	conn *sql.Conn
}

func openIdle(ctx context.Context, o options, addr string) (*idleConn, error) {
	dsn, _ := o.dsn(addr)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := db.Conn(cctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &idleConn{db: db, conn: c}, nil
}

// probe says which server the connection still reaches, or "dead".
func (c *idleConn) probe() string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var id int
	if err := c.conn.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id); err != nil {
		return "dead"
	}
	return strconv.Itoa(id)
}

func (c *idleConn) close() {
	c.conn.Close()
	c.db.Close()
}
