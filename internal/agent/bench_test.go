package agent

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/mariadbtest"
	"github.com/vipguard/vipguard/internal/state"
)

type loadResult struct {
	firstErr  string
	checks    int
	errors    int
	elapsed   time.Duration
	mean, p99 time.Duration
}

func (r loadResult) perSecond() float64 { return float64(r.checks) / r.elapsed.Seconds() }

// load runs clients that each open a connection, send req, read the whole
// answer and close, for d.
func load(addr, req, want string, clients int, d time.Duration) loadResult {
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	firstErr := ""
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			bad := 0
			for time.Since(start) < d {
				t0 := time.Now()
				r, err := tryAsk(addr, req)
				if err != nil || !strings.HasPrefix(r, want) {
					if bad == 0 {
						mu.Lock()
						if firstErr == "" {
							firstErr = fmt.Sprintf("%q %v", r, err)
						}
						mu.Unlock()
					}
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	res := loadResult{checks: len(lat), errors: errs, elapsed: time.Since(start), firstErr: firstErr}
	if len(lat) > 0 {
		slices.Sort(lat)
		var sum time.Duration
		for _, l := range lat {
			sum += l
		}
		res.mean = sum / time.Duration(len(lat))
		res.p99 = lat[(len(lat)*99)/100]
	}
	return res
}

func globalStatus(t *testing.T, db *sql.DB, name string) int {
	var n string
	var v int
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBenchCompare is the benchmark behind scripts/bench-agentcheck.sh.
// It prints; it asserts only that both responders answered.
func TestBenchCompare(t *testing.T) {
	if os.Getenv("VIPGUARD_BENCH") == "" {
		t.Skip("set VIPGUARD_BENCH=1 (scripts/bench-agentcheck.sh)")
	}
	secs, _ := strconv.Atoi(os.Getenv("VIPGUARD_BENCH_SECONDS"))
	if secs <= 0 {
		secs = 5
	}
	clients, _ := strconv.Atoi(os.Getenv("VIPGUARD_BENCH_CLIENTS"))
	if clients <= 0 {
		clients = 4
	}
	dur := time.Duration(secs) * time.Second
	for _, p := range []string{"socat", "mysql"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("bench needs %s: %v", p, err)
		}
	}
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 8})
	mustExec(t, s, "SET GLOBAL read_only=0")
	cfg := socketConfig(t, s, "interval = \"1s\"\nstale_after = \"3s\"\nmax_conns = 1024")
	if err := state.Dir(cfg.StateDir).WriteOutcome(state.Outcome{Event: "MASTER", Phase: "done", Role: "writer"}); err != nil {
		t.Fatal(err)
	}
	counter, err := s.RootDB()
	if err != nil {
		t.Fatal(err)
	}
	defer counter.Close()
	counter.SetMaxOpenConns(1)
	globalStatus(t, counter, "Connections")

	// The shell pattern: socat forks the script, which runs mysql.
	script, _ := filepath.Abs("../../scripts/clustercheck.sh")
	port, err := mariadbtest.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	socat := exec.Command("socat", fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,backlog=256", port),
		"EXEC:"+script+" "+s.Socket)
	if err := socat.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { socat.Process.Kill(); socat.Wait() }()
	shellAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i := 0; ; i++ {
		if r, err := tryAsk(shellAddr, "GET / HTTP/1.0\r\n\r\n"); err == nil && strings.HasPrefix(r, "HTTP/1.1 200") {
			break
		}
		if i > 50 {
			t.Fatal("socat/clustercheck.sh does not answer 200")
		}
		time.Sleep(100 * time.Millisecond)
	}

	const req = "GET /primary HTTP/1.0\r\n\r\n"
	c0 := globalStatus(t, counter, "Connections")
	shell := load(shellAddr, req, "HTTP/1.1 200", clients, dur)
	shellConns := globalStatus(t, counter, "Connections") - c0

	srv, addr := startServer(t, cfg)
	time.Sleep(100 * time.Millisecond)
	c0, q0, p0 := globalStatus(t, counter, "Connections"), globalStatus(t, counter, "Com_show_slave_status"), srv.Metrics.Polls()
	agentRes := load(addr, req, "HTTP/1.1 200", clients, dur)
	conns := globalStatus(t, counter, "Connections") - c0
	shows := globalStatus(t, counter, "Com_show_slave_status") - q0
	polls := srv.Metrics.Polls() - p0
	intervals := agentRes.elapsed.Seconds() / cfg.Agent.Interval.Seconds()
	// HAProxy's agent-check protocol on the same daemon, for reference.
	agentLine := load(addr, "writer\n", "up 100%", clients, dur)

	t.Logf("bench: %d concurrent clients, %s each, one TCP connection per check, GET /primary", clients, dur)
	t.Logf("bench: %-28s %10s %12s %12s %8s", "", "checks/s", "mean", "p99", "errors")
	t.Logf("bench: %-28s %10.0f %12s %12s %8d", "clustercheck.sh via socat", shell.perSecond(), shell.mean.Round(time.Microsecond), shell.p99.Round(time.Microsecond), shell.errors)
	t.Logf("bench: %-28s %10.0f %12s %12s %8d", "agentcheck", agentRes.perSecond(), agentRes.mean.Round(time.Microsecond), agentRes.p99.Round(time.Microsecond), agentRes.errors)
	t.Logf("bench: %-28s %10.0f %12s %12s %8d", "agentcheck (agent-check)", agentLine.perSecond(), agentLine.mean.Round(time.Microsecond), agentLine.p99.Round(time.Microsecond), agentLine.errors)
	for _, r := range []loadResult{shell, agentRes, agentLine} {
		if r.errors > 0 {
			t.Logf("bench: first failed check: %s", r.firstErr)
		}
	}
	if shell.checks > 0 {
		t.Logf("bench: agentcheck/shell throughput: %.0fx", agentRes.perSecond()/shell.perSecond())
	}
	t.Logf("bench: MySQL connections during the shell run: %d for %d checks", shellConns, shell.checks)
	t.Logf("bench: MySQL during the agentcheck run (%.1f intervals of %s, %d checks): %d connections, %d SHOW ALL SLAVES STATUS, %d polls => %.2f polls per interval",
		intervals, cfg.Agent.Interval.Duration, agentRes.checks, conns, shows, polls, float64(conns)/intervals)
	if shell.checks == 0 || agentRes.checks == 0 {
		t.Fatal("a responder answered nothing")
	}
}

// BenchmarkAgentCheck measures one agent-check round trip (connect, ask,
// read, close) against the daemon's cached state.
func BenchmarkAgentCheck(b *testing.B) {
	cfg := benchConfig(b)
	srv := NewServer(cfg, discardLog())
	srv.Poller.PollOnce(context.Background())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, l)
	addr := l.Addr().String()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := tryAsk(addr, "writer\n"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
