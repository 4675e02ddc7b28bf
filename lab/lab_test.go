package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/lab/loadev"
)

// EnvSwitch turns the lab tests on. Set, a lab that cannot start is a
// failure, never a skip (CI sets it).
const EnvSwitch = "VIPGUARD_LAB"

// ResultsEnv names the file the scenarios append their figures to.
const ResultsEnv = "VIPGUARD_LAB_RESULTS"

// StandInEnv set to 1 runs the lab with the stand-in notify (today's
// reality) instead of cmd/notify.
const StandInEnv = "VIPGUARD_LAB_STANDIN"

// SemiSyncEnv set to 1 runs the lab's pair with semi-sync enabled
// (Options.SemiSync).
const SemiSyncEnv = "VIPGUARD_LAB_SEMISYNC"

var (
	shared     *Lab
	sharedErr  error
	sharedOnce sync.Once
	sharedMu   sync.Mutex
)

func TestMain(m *testing.M) {
	code := m.Run()
	sharedMu.Lock()
	for _, l := range []*Lab{shared, semiShared} {
		if l != nil {
			if err := l.Close(); err != nil {
				fmt.Fprintf(os.Stderr, "lab teardown: %v\n", err)
				code = 1
			}
		}
	}
	sharedMu.Unlock()
	os.Exit(code)
}

// needLab returns the lab shared by every scenario of this test binary,
// starting it on first use. Scenarios restore the clean state themselves.
func needLab(t *testing.T) *Lab {
	t.Helper()
	if os.Getenv(EnvSwitch) != "1" {
		t.Skipf("failover lab not run: set %s=1 (needs root, network namespaces, mariadb-server, keepalived, haproxy)", EnvSwitch)
	}
	// The lab's progress lines go to the test that asked for it last: a
	// testing.T must not log after its test has ended.
	sharedMu.Lock()
	current = t
	sharedMu.Unlock()
	sharedOnce.Do(func() {
		// A Ctrl-C or kill during the run still tears the lab down.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() {
			s := <-sig
			sharedMu.Lock()
			for _, l := range []*Lab{shared, semiShared} {
				if l != nil {
					l.Close()
				}
			}
			fmt.Fprintf(os.Stderr, "lab: %v: torn down\n", s)
			os.Exit(2)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// VIPGUARD_LAB_STANDIN=1 runs the stand-in notify instead of cmd/notify.
		l, err := Start(ctx, Options{Logf: labLogf, StandIn: os.Getenv(StandInEnv) == "1", SemiSync: os.Getenv(SemiSyncEnv) == "1"})
		sharedMu.Lock()
		shared, sharedErr = l, err
		sharedMu.Unlock()
		if rf := resultsFile(); rf != "" {
			_ = os.WriteFile(rf, []byte("# vipguard failover lab results, "+time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
		}
	})
	if sharedErr != nil {
		t.Fatalf("the lab cannot start (and %s=1): %v", EnvSwitch, sharedErr)
	}
	return shared
}

// current is the test that last called needLab (under sharedMu).
var current *testing.T

func labLogf(format string, args ...any) {
	sharedMu.Lock()
	t := current
	sharedMu.Unlock()
	if t != nil {
		t.Logf(format, args...)
	}
}

func resultsFile() string {
	if f := os.Getenv(ResultsEnv); f != "" {
		return f
	}
	return RunRoot + "/last-results.txt"
}

func record(t *testing.T, line string) {
	t.Helper()
	t.Log(line)
	f, err := os.OpenFile(resultsFile(), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Logf("results file: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func runScenario(t *testing.T, name string) Result {
	l := needLab(t)
	ctx := testCtx(t)
	f, ok := FaultByName(name)
	if !ok {
		t.Fatalf("no fault %q", name)
	}
	res, err := l.RunFailover(ctx, f, Hooks{Phase: func(m string) { t.Log(m) }})
	if res.From != "" {
		record(t, res.String())
	}
	if err != nil {
		t.Errorf("%s: %v\n%s", name, err, l.Diagnostics())
		// Leave a clean lab for the next scenario if at all possible.
		if rerr := l.Recover(ctx, 60*time.Second); rerr != nil {
			t.Fatalf("lab could not recover: %v", rerr)
		}
	}
	return res
}

// Scenario 1: mysqld killed on the VIP holder under write load.
func TestFailoverKill(t *testing.T) {
	res := runScenario(t, "kill")
	if res.From == res.To {
		t.Fatalf("VIP did not move: %+v", res)
	}
}

// Scenario 2: mysqld frozen on the VIP holder. mysqlcheck answers within
// its deadline, so keepalived moves the VIP instead of hanging.
func TestFailoverFreeze(t *testing.T) {
	runScenario(t, "freeze")
}

// Scenario 3: planned switchover with maintenance mode; off again, the old
// holder is a healthy standby (fit, replicating, BACKUP).
func TestMaintenanceSwitchover(t *testing.T) {
	res := runScenario(t, "maintenance")
	if t.Failed() {
		return
	}
	l := needLab(t)
	ctx := testCtx(t)
	c := l.Mysqlcheck(ctx, res.From)
	if !c.Fit() || !strings.Contains(c.Line, "standby") {
		t.Errorf("%s after maintenance off: mysqlcheck %s, want fit standby", res.From, c)
	}
	if s := l.KeepalivedState(res.From); s != "BACKUP" {
		t.Errorf("%s keepalived state %s after maintenance off, want BACKUP", res.From, s)
	}
	if err := l.replicationHealthy(ctx, res.From); err != nil {
		t.Error(err)
	}
}

// Scenario 4: replica SQL thread stopped on the standby. The fast path
// makes it unfit at once; keepalived puts it in FAULT; notify's fence
// restarts the thread (a node that looks healthy while not replicating is
// what vipguard exists to prevent) and it comes back as a standby by
// itself, the VIP never moving. An applier error restarting cannot mend
// keeps it unfit, with the reason, until a DBA mends it.
func TestStandbySQLThreadStopped(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	h, err := l.Holder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	standby := l.Nodes[h].Peer
	if c := l.Mysqlcheck(ctx, standby); !c.Fit() {
		t.Fatalf("standby %s unfit before the fault: %s", standby, c)
	}
	stopped := time.Now()
	if err := l.StopReplicaThread(ctx, standby, "SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	// notify's FAULT fence restarts the thread: it runs again, and the
	// last transition recorded is a FAULT (or the BACKUP after it) newer
	// than the stop.
	var healed time.Duration
	for deadline := time.Now().Add(15 * time.Second); healed == 0; {
		st, err := l.ReplicationStatus(ctx, standby)
		o, _ := state.Dir(l.Nodes[standby].StateDir).Outcome()
		if err == nil && st["Slave_SQL_Running"] == "Yes" && o != nil && o.At.After(stopped) && !o.Unfit {
			healed = time.Since(stopped)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("standby %s: SQL thread not restarted by notify within 15s (SQL=%s, outcome %+v)\n%s", standby, st["Slave_SQL_Running"], o, l.Diagnostics())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(l.Nodes[standby].Dir, "keepalived.log")); err != nil || !strings.Contains(string(b), "Entering FAULT STATE") {
		t.Errorf("standby %s never went FAULT with its SQL thread stopped (%v)", standby, err)
	}
	if err := l.WaitStable(ctx, 30*time.Second); err != nil {
		t.Fatalf("after the restart: %v\n%s", err, l.Diagnostics())
	}
	if now, _ := l.Holder(ctx); now != h {
		t.Errorf("VIP moved from %s to %q when the standby's replication stopped", h, now)
	}
	record(t, fmt.Sprintf("%-16s standby %s: SQL thread stopped, FAULT, restarted by notify and fit again after %.2fs",
		"sql-thread-stop", standby, healed.Seconds()))

	// An applier error: unfit with the reason, HAProxy takes it out of the
	// reader backend, and mended it comes back.
	mend, err := l.BreakReplication(ctx, standby, h)
	if err != nil {
		t.Fatal(err)
	}
	out, outTook, err := l.WaitHAProxy(ctx, "mysql_reader/"+standby, func(s ServerStat) bool { return IsDown(s.Status) },
		AgentInterval+agentInter+2*time.Second)
	if err != nil {
		t.Errorf("standby with its applier failed: %v\n%s", err, l.Diagnostics())
	}
	// The node's FAULT fence runs meanwhile and kills every client
	// session, mysqlcheck's too ("does not answer"): ask again until it
	// gets to read the server, a bounded number of times.
	c := l.Mysqlcheck(ctx, standby)
	for i := 0; i < 10 && c.Exit == 1 && strings.Contains(c.Line, "does not answer"); i++ {
		time.Sleep(200 * time.Millisecond)
		c = l.Mysqlcheck(ctx, standby)
	}
	if c.Exit != 1 || !strings.Contains(c.Line, "1062") {
		t.Errorf("standby with its applier failed: mysqlcheck %s, want exit 1 naming error 1062", c)
	}
	if now, _ := l.Holder(ctx); now != h {
		t.Errorf("VIP moved from %s to %q when the standby's replication broke", h, now)
	}
	if st, _ := l.HAProxyServers(); st["mysql_writer/"+h] != "UP" {
		t.Errorf("writer %s is %q in HAProxy when the standby's replication broke", h, st["mysql_writer/"+h])
	}
	if err := mend(ctx); err != nil {
		t.Fatal(err)
	}
	_, backTook, err := l.WaitHAProxy(ctx, "mysql_reader/"+standby, func(s ServerStat) bool { return s.Status == "UP" },
		AgentInterval+3*agentInter+10*time.Second)
	if err != nil {
		t.Errorf("standby with its applier mended: %v", err)
	}
	record(t, fmt.Sprintf("%-16s standby %s: out of HAProxy's reader backend %.2fs after error 1062 (agent %q), back %.2fs after the mend",
		"agent-sql-error", standby, outTook.Seconds(), out.Agent, backTook.Seconds()))
	if err := l.Recover(ctx, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, l.Diagnostics())
	}
}

func TestCleanStale(t *testing.T) {
	if os.Getenv(EnvSwitch) != "1" {
		t.Skipf("set %s=1 to run (needs root)", EnvSwitch)
	}
	if err := Preflight(); err != nil {
		t.Fatalf("the lab cannot run here (and %s=1): %v", EnvSwitch, err)
	}
	ctx := testCtx(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	// Owners: a pid that has exited, and a live pid (init) whose start time
	// is not the recorded one (the pid was recycled).
	owners := []string{strconv.Itoa(dead.Process.Pid), "1 999999999"}
	var prefixes []string
	var waits []chan error
	for i := 0; i < 200 && len(prefixes) < len(owners); i++ {
		p := fmt.Sprintf("vg%04d", (os.Getpid()+5000+i)%10000)
		if _, err := os.Stat(filepath.Join(RunRoot, p)); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Join(RunRoot, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ownerFile(p), []byte(owners[len(prefixes)]+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ns := p + "-db1"
		if _, err := run(ctx, "ip", "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = run(context.Background(), "ip", "netns", "del", ns) })
		// A process left running in the stale namespace is killed too.
		sleeper := exec.Command("ip", "netns", "exec", ns, "sleep", "60")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		w := make(chan error, 1)
		go func() { w <- sleeper.Wait() }()
		t.Cleanup(func() { _ = sleeper.Process.Kill() })
		prefixes = append(prefixes, p)
		waits = append(waits, w)
	}

	cleaned, err := CleanStale()
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range prefixes {
		if !slices.Contains(cleaned, p) {
			t.Errorf("CleanStale cleaned %v, want %s (owner %q) among them", cleaned, p, owners[i])
		}
		if _, err := os.Stat(filepath.Join("/run/netns", p+"-db1")); err == nil {
			t.Errorf("namespace %s-db1 still exists", p)
		}
		if _, err := os.Stat(filepath.Join(RunRoot, p)); err == nil {
			t.Errorf("run dir of %s still exists", p)
		}
		select {
		case <-waits[i]:
		case <-time.After(5 * time.Second):
			t.Errorf("process in the stale namespace %s still runs", p)
		}
	}
	// Our own lab, if one runs, survives.
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if shared != nil {
		if _, err := os.Stat(filepath.Join("/run/netns", shared.Net.NS("db1"))); err != nil {
			t.Errorf("CleanStale removed the live lab: %v", err)
		}
	}
}

// keepalived stopped on the holder releases the VIP at once (priority 0
// advert, STOP notify); restarted, it comes back as BACKUP.
func TestFailoverKeepalivedStop(t *testing.T) {
	runScenario(t, "keepalived-stop")
}

// The holder's link goes down: keepalived sees the carrier loss, the peer
// takes over; healed, the node rejoins as a standby.
func TestFailoverLinkCut(t *testing.T) {
	runScenario(t, "link-cut")
}

// The holder is cut off with its link up: only the witness check (the
// proxy host) tells it so. It must yield and be fenced, never stay
// writable beside the promoted peer.
func TestFailoverPartition(t *testing.T) {
	runScenario(t, "partition")
}

// The standby is cut off with its link up: it stops hearing the holder and
// reaches no witness. It must never open writes (its check fails first and
// keepalived puts it in FAULT; were keepalived to make it MASTER first,
// notify's promotion must refuse), while the holder keeps the VIP and the
// writes; healed, it is a standby again with every acknowledged write.
func TestStandbyPartition(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	holder, err := l.Holder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	standby := l.Nodes[holder].Peer
	sampler, err := l.StartSampler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := l.StartLoad(ctx, LoadOptions{})
	if err != nil {
		sampler.Stop()
		t.Fatal(err)
	}
	if err := sleep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.Partition(ctx, standby); err != nil {
		t.Fatal(err)
	}
	// The standby's keepalived gives up on the holder after three adverts
	// (~3 s); its promotion then waits peer_timeout (3 s) before asking
	// the witness. 12 s covers both with room.
	if err := sleep(ctx, 12*time.Second); err != nil {
		t.Fatal(err)
	}
	state := l.KeepalivedState(standby)
	holds, herr := l.Net.HasAddr(ctx, holder, VIP)
	lr, lerr := ld.Stop()
	rep := sampler.Stop()
	t.Logf("%s cut off for 12 s: keepalived %s; %s holds the VIP: %v; writes: %d acked, longest gap %.2fs; samples %d, both writable %d",
		standby, state, holder, holds, len(lr.Acked), lr.MaxGap().Seconds(), rep.Samples, len(rep.BothWritable))
	if lerr != nil {
		t.Fatal(lerr)
	}
	if herr != nil || !holds {
		t.Errorf("%s lost the VIP while its standby was cut off (%v)", holder, herr)
	}
	if n := len(rep.BothWritable); n > 0 {
		t.Errorf("both nodes writable in %d of %d samples, first at %s", n, rep.Samples, rep.BothWritable[0].Format("15:04:05.000"))
	}
	// Its witness check fails (fall 2: ~2 s) before keepalived gives up
	// on the holder (~3 s): FAULT, no promotion. Should keepalived win
	// the race, notify's promotion must have refused.
	if state != "FAULT" {
		if b, _ := os.ReadFile(l.Nodes[standby].NotifyLog); !strings.Contains(string(b), "this node is the one cut off") {
			t.Errorf("%s is %s and its notify log shows no refused promotion:\n%s", standby, state, b)
		}
	}
	if err := l.Recover(ctx, 90*time.Second); err != nil {
		t.Fatalf("recovering: %v\n%s", err, l.Diagnostics())
	}
	if err := l.VerifyAll(ctx, lr.Acked); err != nil {
		t.Fatalf("after healing: %v\n%s", err, l.Diagnostics())
	}
	if h, err := l.Holder(ctx); err != nil || h != holder {
		t.Errorf("after healing the VIP is on %q (%v), want it still on %s", h, err, holder)
	}
}

// The remaining injectors on the standby: IO thread stopped (unfit, with
// the reason) and replication delay (events arrive late, the node stays
// fit within max_lag). Recover mends both.
func TestStandbyReplicationFaults(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	h, _ := l.Holder(ctx)
	standby := l.Nodes[h].Peer
	defer func() {
		if err := l.Recover(ctx, 60*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, l.Diagnostics())
		}
	}()

	if err := l.StopReplicaThread(ctx, standby, "IO_THREAD"); err != nil {
		t.Fatal(err)
	}
	if c := l.Mysqlcheck(ctx, standby); c.Exit != 1 || !strings.Contains(c.Line, "IO thread is stopped") {
		t.Errorf("standby with IO thread stopped: mysqlcheck %s, want exit 1 naming the IO thread", c)
	}
	if err := l.Nodes[standby].DB.Exec(ctx, "START SLAVE IO_THREAD"); err != nil {
		t.Fatal(err)
	}

	const delay = 3 * time.Second
	if err := l.SetReplicationDelay(ctx, standby, delay); err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("delay-%d", time.Now().UnixNano())
	if err := l.Nodes[h].DB.Exec(ctx, "INSERT INTO vgtest.lab_writes (k, path, server_id) VALUES ('"+key+"', 'lab', @@server_id)"); err != nil {
		t.Fatal(err)
	}
	wrote := time.Now()
	var arrived time.Duration
	for time.Since(wrote) < 15*time.Second {
		n, err := l.Nodes[standby].DB.Query(ctx, "SELECT COUNT(*) FROM vgtest.lab_writes WHERE k = ?", key)
		if err != nil {
			t.Fatal(err)
		}
		if n == "1" {
			arrived = time.Since(wrote)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if arrived == 0 {
		t.Fatalf("write never reached the delayed standby")
	}
	// MASTER_DELAY counts from the event's timestamp (whole seconds).
	if arrived < delay-1500*time.Millisecond {
		t.Errorf("write reached the standby after %s despite MASTER_DELAY=%s", arrived, delay)
	}
	t.Logf("with MASTER_DELAY=%s the write reached %s after %s; mysqlcheck: %s", delay, standby, arrived.Round(time.Millisecond), l.Mysqlcheck(ctx, standby))
}

// The slow autocommit statement runs through the VIP on demand and, once
// acknowledged, is on both nodes.
func TestSlowStatement(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	ld, err := l.StartLoad(ctx, LoadOptions{IdleVIP: 3})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := ld.Slow(1.5); err != nil {
		t.Fatal(err)
	}
	var ev loadevEvent
	select {
	case ev = <-ld.SlowResults():
	case <-time.After(20 * time.Second):
		t.Fatal("no outcome of the slow statement within 20s")
	}
	res, err := ld.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if !ev.OKSlow {
		t.Fatalf("slow statement failed: %s", ev.Msg)
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("slow statement acknowledged after %s, before its SLEEP(1.5) could end", took)
	}
	if !slices.Contains(res.Acked, ev.Msg) {
		t.Errorf("slow statement's key %q not among the acknowledged writes", ev.Msg)
	}
	if res.Summary.Idle[strconv.Itoa(int(l.Nodes[mustHolder(t, l)].DB.Opts.ServerID))] != 3 {
		t.Errorf("idle connections at the end: %v, want 3 alive on the holder", res.Summary.Idle)
	}
	if err := l.VerifyAll(ctx, res.Acked); err != nil {
		t.Error(err)
	}
}

// stableLab returns the shared lab once it is in its clean state, the
// test's context, and the VIP holder.
func stableLab(t *testing.T) (*Lab, context.Context, string) {
	t.Helper()
	l := needLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	return l, ctx, mustHolder(t, l)
}

func mustHolder(t *testing.T, l *Lab) string {
	t.Helper()
	h, err := l.Holder(context.Background())
	if err != nil || (h != "db1" && h != "db2") {
		t.Fatalf("VIP holder %q (%v)", h, err)
	}
	return h
}

type loadevEvent = loadev.Event

// The verifiers can fail: a key nobody wrote is reported missing, and a row
// written on one node only (outside replication) makes the tables differ.
func TestVerifiersCatchDivergence(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyAcked(ctx, []string{"never-written"}); err == nil {
		t.Error("VerifyAcked accepted a key that was never written")
	}
	standby := l.Nodes[mustHolder(t, l)].Peer
	db := l.Nodes[standby].DB
	const stray = "INSERT INTO vgtest.lab_writes (k, path, server_id) VALUES ('stray-row', 'lab', 0)"
	if err := db.Exec(ctx, "SET SESSION sql_log_bin=0", stray); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := db.Exec(ctx, "SET SESSION sql_log_bin=0", "DELETE FROM vgtest.lab_writes WHERE k='stray-row'"); err != nil {
			t.Fatal(err)
		}
		if err := l.VerifyIdentical(ctx); err != nil {
			t.Errorf("after removing the stray row: %v", err)
		}
	}()
	if err := l.VerifyIdentical(ctx); err == nil {
		t.Error("VerifyIdentical accepted tables that differ by one row")
	}
}
