package check

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

func ptr[T any](v T) *T { return &v }

func defaults() config.Check { return config.Default().Check }

func TestEvaluateTable(t *testing.T) {
	healthy := probe.Replica{SourceHost: "db1", IORunning: "Yes", SQLRunning: true, SecondsBehind: ptr(int64(0))}
	standby := func(r ...probe.Replica) *probe.Snapshot {
		return &probe.Snapshot{ReadOnly: true, Replicas: r}
	}
	with := func(f func(*probe.Replica)) probe.Replica { r := healthy; f(&r); return r }
	cases := []struct {
		name   string
		in     Input
		status Status
		reason string
	}{
		{"writer", Input{Snapshot: &probe.Snapshot{}}, OK, "writer"},
		{"semi-sync writer, acknowledged", Input{Snapshot: &probe.Snapshot{SemiSync: &probe.SemiSync{Available: true, Source: true, SourceEnabled: true, SourceOn: true, Clients: 1, ReplicaEnabled: true}}}, OK, "semi-sync active, 1 acknowledging replica(s)"},
		{"semi-sync writer, fallen back", Input{Snapshot: &probe.Snapshot{SemiSync: &probe.SemiSync{Available: true, Source: true, SourceEnabled: true, FallBacks: 2, Unacked: 9}}}, Warning, "semi-sync fallen back to asynchronous (2 fall-back(s), 9 commits not acknowledged)"},
		{"semi-sync writer, no replica yet", Input{Snapshot: &probe.Snapshot{SemiSync: &probe.SemiSync{Available: true, Source: true, ReplicaEnabled: true}}}, Warning, "source side off"},
		{"semi-sync available, unused", Input{Snapshot: &probe.Snapshot{SemiSync: &probe.SemiSync{Available: true, Source: true}}}, OK, "answers"},
		{"semi-sync standby", Input{Snapshot: &probe.Snapshot{ReadOnly: true, Replicas: []probe.Replica{healthy}, SemiSync: &probe.SemiSync{Available: true, ReplicaEnabled: true, ReplicaOn: true}}}, OK, "replicating, lag 0s; semi-sync replica side on, source side off"},
		{"writer with broken reverse channel warns", Input{Snapshot: &probe.Snapshot{Replicas: []probe.Replica{with(func(r *probe.Replica) { r.SQLRunning = false })}}}, Warning, "reverse replication"},
		{"mysql super_read_only is not writable", Input{Snapshot: &probe.Snapshot{SuperReadOnly: true, Replicas: []probe.Replica{healthy}}}, OK, "standby"},
		{"healthy standby", Input{Snapshot: standby(healthy)}, OK, "replicating, lag 0s"},
		{"standby without replication", Input{Snapshot: standby()}, Critical, "not replicating"},
		{"sql stopped", Input{Snapshot: standby(with(func(r *probe.Replica) { r.SQLRunning = false }))}, Critical, "SQL thread is stopped"},
		{"sql error", Input{Snapshot: standby(with(func(r *probe.Replica) { r.SQLRunning, r.SQLErrno, r.SQLError = false, 1062, "Duplicate entry\n'1'" }))}, Critical, "error 1062: Duplicate entry '1'"},
		{"io stopped by hand", Input{Snapshot: standby(with(func(r *probe.Replica) { r.IORunning = "No" }))}, Critical, "IO thread is stopped"},
		{"io fatal error", Input{Snapshot: standby(with(func(r *probe.Replica) { r.IORunning, r.IOErrno = "No", 1236 }))}, Critical, "error 1236"},
		{"io access denied while connecting", Input{Snapshot: standby(with(func(r *probe.Replica) { r.IORunning, r.IOErrno = "Connecting", 1045 }))}, Critical, "cannot log in"},
		{"source down is fit", Input{Snapshot: standby(with(func(r *probe.Replica) { r.IORunning, r.IOErrno, r.SecondsBehind = "Connecting", 2003, nil }))}, OK, "unreachable (IO thread Connecting, error 2003)"},
		{"io preparing is fit", Input{Snapshot: standby(with(func(r *probe.Replica) { r.IORunning, r.SecondsBehind = probe.IOPreparing, nil }))}, OK, "IO thread Preparing to source db1"},
		{"register refused while the source restarts is fit", Input{Snapshot: standby(with(func(r *probe.Replica) {
			r.IORunning, r.IOErrno, r.IOError = probe.IOConnecting, 1597, "Master command COM_REGISTER_SLAVE failed: Lost connection to server during query (Errno: 2013)"
		}))}, OK, "unreachable (IO thread Connecting, error 1597)"},
		{"source down ignores heartbeat lag", Input{Snapshot: &probe.Snapshot{ReadOnly: true, HeartbeatLag: ptr(time.Hour), Replicas: []probe.Replica{with(func(r *probe.Replica) { r.IORunning, r.IOErrno = "Connecting", 2003 })}}}, OK, "unreachable"},
		{"lag over max", Input{Snapshot: standby(with(func(r *probe.Replica) { r.SecondsBehind = ptr(int64(301)) }))}, Critical, "above max_lag"},
		{"lag over warn", Input{Snapshot: standby(with(func(r *probe.Replica) { r.SecondsBehind = ptr(int64(31)) }))}, Warning, "lag 31s"},
		{"heartbeat wins over seconds behind", Input{Snapshot: &probe.Snapshot{ReadOnly: true, HeartbeatLag: ptr(400 * time.Second), Replicas: []probe.Replica{healthy}}}, Critical, "6m40s"},
		{"maintenance", Input{Maintenance: state.Maintenance{On: true, Reason: "kernel update"}, Snapshot: standby(healthy)}, Critical, "maintenance mode is on (kernel update)"},
		{"probe error", Input{SnapshotErr: errors.New("boom")}, Critical, "does not answer: boom"},
		{"deadline", Input{SnapshotErr: fmt.Errorf("x: %w", context.DeadlineExceeded), Timeout: time.Second}, Critical, "did not answer within 1s"},
		{"refused", Input{SnapshotErr: fmt.Errorf("dial: %w", syscall.ECONNREFUSED)}, Critical, "not running"},
		{"nothing read", Input{}, Unknown, "no server state"},
		{"notify marked unfit", Input{Snapshot: &probe.Snapshot{}, Outcome: &state.Outcome{Event: "MASTER", Unfit: true, Reason: "gate not met"}}, Critical, "gate not met"},
		{"outcome unreadable", Input{Snapshot: &probe.Snapshot{}, OutcomeErr: errors.New("corrupt")}, Critical, "corrupt"},
		{"isolated writer", Input{Snapshot: &probe.Snapshot{}, Witness: &Witness{Failures: []string{"192.0.2.1:22: no answer within 300ms"}}}, Critical, "isolated: no witness answered (192.0.2.1:22: no answer within 300ms)"},
		{"isolated standby", Input{Snapshot: standby(healthy), Witness: &Witness{Failures: []string{"a:1: x", "b:2: y"}}}, Critical, "(a:1: x; b:2: y)"},
		{"witness reached", Input{Snapshot: &probe.Snapshot{}, Witness: &Witness{Reached: "192.0.2.1:22", Failures: []string{"b:2: y"}}}, OK, "writer"},
		{"no witness at all: fit, but says so", Input{Snapshot: standby(healthy), Witness: &Witness{None: true}}, Warning, "replicating, lag 0s; no witness: this node cannot tell a dead peer"},
		{"no witness on an unfit node: unfit reason first", Input{Snapshot: standby(), Witness: &Witness{None: true}}, Critical, "not replicating from any source"},
		{"learned witnesses unreadable", Input{Snapshot: standby(healthy), Witness: &Witness{Err: errors.New("learned witnesses in /x unreadable")}}, Critical, "cannot tell: learned witnesses in /x unreadable"},
		{"learned witness reached", Input{Snapshot: standby(healthy), Witness: &Witness{Source: witness.FromProxies, Reached: "192.0.2.20:9"}}, OK, "replicating"},
		{"maintenance before isolation", Input{Maintenance: state.Maintenance{On: true}, Witness: &Witness{}}, Critical, "maintenance mode is on"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Evaluate(defaults(), tc.in)
			if v.Status != tc.status || !strings.Contains(v.Reason, tc.reason) {
				t.Fatalf("got %s %q, want %s containing %q", v.Status, v.Reason, tc.status, tc.reason)
			}
			if v.Fit != (tc.status == OK || tc.status == Warning) {
				t.Fatalf("fit=%v for status %s", v.Fit, v.Status)
			}
			if strings.Contains(v.Reason, "\n") {
				t.Fatalf("reason is not one line: %q", v.Reason)
			}
		})
	}
}

func TestEvaluateKnobs(t *testing.T) {
	c := defaults()
	c.RequireReplication = ptr(false)
	c.FailOnReplicationError = ptr(false)
	c.MaxLag.Duration = 0
	if v := Evaluate(c, Input{Snapshot: &probe.Snapshot{ReadOnly: true}}); !v.Fit {
		t.Fatalf("require_replication=false: %+v", v)
	}
	broken := probe.Replica{IORunning: "Yes", SQLRunning: false}
	if v := Evaluate(c, Input{Snapshot: &probe.Snapshot{ReadOnly: true, Replicas: []probe.Replica{broken}}}); !v.Fit || v.Status != Warning {
		t.Fatalf("fail_on_replication_error=false: %+v", v)
	}
	lagging := probe.Replica{IORunning: "Yes", SQLRunning: true, SecondsBehind: ptr(int64(100000))}
	if v := Evaluate(c, Input{Snapshot: &probe.Snapshot{ReadOnly: true, Replicas: []probe.Replica{lagging}}}); !v.Fit {
		t.Fatalf("max_lag=0 disables the limit: %+v", v)
	}
}

// cfgFor returns a configuration for s as root over the socket.
func cfgFor(t *testing.T, s *mariadbtest.Server, extra string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	toml := fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\nuser = \"root\"\n%s", filepath.Join(dir, "state"), s.Socket, extra)
	p := filepath.Join(dir, "vipguard.toml")
	if err := os.WriteFile(p, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustExec(t *testing.T, s *mariadbtest.Server, q ...string) {
	t.Helper()
	if err := s.Exec(context.Background(), q...); err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, cfg *config.Config, fit bool, reason string) Verdict {
	t.Helper()
	v := Run(context.Background(), cfg)
	if v.Fit != fit || !strings.Contains(v.Reason, reason) {
		t.Fatalf("got fit=%v %q, want fit=%v containing %q", v.Fit, v.Reason, fit, reason)
	}
	return v
}

// waitFor polls the check until it gives the wanted answer (replication
// state changes asynchronously), failing after limit.
func waitFor(t *testing.T, cfg *config.Config, fit bool, reason string, limit time.Duration) Verdict {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		v := Run(context.Background(), cfg)
		if v.Fit == fit && strings.Contains(v.Reason, reason) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: got fit=%v %q, want fit=%v containing %q", limit, v.Fit, v.Reason, fit, reason)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestRealPair(t *testing.T) {
	a, b := mariadbtest.Pair(t, mariadbtest.PairOptions{})
	mustExec(t, a, "SET GLOBAL read_only=OFF",
		"CREATE TABLE vgtest.t (id INT PRIMARY KEY, v VARCHAR(20))",
		"INSERT INTO vgtest.t VALUES (1,'a')")
	if err := b.SyncWith(context.Background(), a, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ca, cb := cfgFor(t, a, ""), cfgFor(t, b, "")

	t.Run("fit primary", func(t *testing.T) { expect(t, ca, true, "writer: read_only=OFF") })
	t.Run("fit replica", func(t *testing.T) {
		v := expect(t, cb, true, "standby: read-only, replicating, lag 0s")
		if v.Role != "standby" || v.Lag == nil {
			t.Fatalf("verdict %+v", v)
		}
	})
	t.Run("maintenance on", func(t *testing.T) {
		dir := state.Dir(cb.StateDir)
		if err := dir.SetMaintenance(true, "patching", "test"); err != nil {
			t.Fatal(err)
		}
		expect(t, cb, false, "maintenance mode is on since")
		expect(t, cb, false, "(patching)")
		if err := dir.SetMaintenance(false, "", ""); err != nil {
			t.Fatal(err)
		}
		expect(t, cb, true, "standby")
	})
	t.Run("stopped SQL thread", func(t *testing.T) {
		mustExec(t, b, "STOP SLAVE SQL_THREAD")
		expect(t, cb, false, "SQL thread is stopped")
		mustExec(t, b, "START SLAVE SQL_THREAD")
		waitFor(t, cb, true, "replicating", 10*time.Second)
	})
	t.Run("stopped IO thread", func(t *testing.T) {
		mustExec(t, b, "STOP SLAVE IO_THREAD")
		expect(t, cb, false, "IO thread is stopped")
		mustExec(t, b, "START SLAVE IO_THREAD")
		waitFor(t, cb, true, "replicating", 10*time.Second)
	})
	t.Run("replication error", func(t *testing.T) {
		// A row written on the standby behind replication's back, then the
		// same key on the writer: the standby's SQL thread stops on 1062.
		mustExec(t, b, "SET SESSION sql_log_bin=0", "SET GLOBAL read_only=OFF",
			"INSERT INTO vgtest.t VALUES (2,'rogue')", "SET GLOBAL read_only=ON")
		mustExec(t, a, "INSERT INTO vgtest.t VALUES (2,'writer')")
		waitFor(t, cb, false, "SQL thread stopped with error 1062", 10*time.Second)
		// The writer stays fit, with a warning only if its own channel broke.
		expect(t, ca, true, "writer")
		mustExec(t, b, "STOP SLAVE", "SET SESSION sql_log_bin=0", "DELETE FROM vgtest.t WHERE id=2", "START SLAVE")
		waitFor(t, cb, true, "replicating", 10*time.Second)
	})
	t.Run("lag above limit on a delayed replica", func(t *testing.T) {
		lagCfg := cfgFor(t, b, "[check]\nmax_lag = \"1s\"\n")
		mustExec(t, b, "STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY=30", "START SLAVE")
		mustExec(t, a, "INSERT INTO vgtest.t VALUES (3,'delayed')")
		waitFor(t, lagCfg, false, "above max_lag 1s", 15*time.Second)
		mustExec(t, b, "STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY=0", "START SLAVE")
		waitFor(t, lagCfg, true, "replicating", 15*time.Second)
	})
	t.Run("source down leaves the standby fit", func(t *testing.T) {
		a.Kill()
		v := waitFor(t, cb, true, "unreachable", 15*time.Second)
		t.Logf("standby with dead writer: %s", v.Reason)
		expect(t, ca, false, "not running")
	})
}

func TestRealHeartbeat(t *testing.T) {
	if _, err := exec.LookPath("pt-heartbeat"); err != nil {
		if os.Getenv(mariadbtest.RequireEnv) != "" {
			t.Fatalf("pt-heartbeat not installed (apt-get install percona-toolkit)")
		}
		t.Skip("pt-heartbeat not installed")
	}
	a, b := mariadbtest.Pair(t, mariadbtest.PairOptions{})
	mustExec(t, a, "SET GLOBAL read_only=OFF", "CREATE DATABASE hb")
	// The real pt-heartbeat writes the table, one row per writer server_id.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	hb := exec.CommandContext(ctx, "pt-heartbeat", "--update", "--create-table", "--utc",
		"--database", "hb", "--socket", a.Socket, "--user", "root", "--interval", "0.2")
	hb.Stdout, hb.Stderr = os.Stderr, os.Stderr
	if err := hb.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hb.Process.Kill(); _ = hb.Wait() }()
	cb := cfgFor(t, b, "[heartbeat]\ntable = \"hb.heartbeat\"\n[check]\nmax_lag = \"3s\"\n")
	v := waitFor(t, cb, true, "replicating, lag", 20*time.Second)
	if v.Lag == nil || *v.Lag > 2*time.Second {
		t.Fatalf("heartbeat lag on a healthy replica: %+v", v)
	}
	// Seconds_Behind_Master reads 0 while the SQL thread idles behind a
	// delay; the heartbeat keeps counting.
	mustExec(t, b, "STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY=60", "START SLAVE")
	v = waitFor(t, cb, false, "above max_lag 3s", 20*time.Second)
	t.Logf("delayed replica: %s", v.Reason)
	// A writer does not judge itself by its own heartbeat row.
	expect(t, cfgFor(t, a, "[heartbeat]\ntable = \"hb.heartbeat\"\n"), true, "writer")
}

func TestRealFrozenServer(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 7})
	mustExec(t, s, "SET GLOBAL read_only=OFF")
	for _, tc := range []struct{ name, extra string }{
		{"socket", ""},
		{"tcp", fmt.Sprintf("host = %q\nport = %d\n", s.Host, s.Port)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cfgFor(t, s, tc.extra+"[check]\ntimeout = \"700ms\"\n")
			if tc.extra != "" {
				cfg.MySQL.User, cfg.MySQL.Password = mariadbtest.CheckUser, mariadbtest.CheckPassword
			}
			expect(t, cfg, true, "writer")
			if err := s.Freeze(); err != nil {
				t.Fatal(err)
			}
			defer s.Thaw()
			start := time.Now()
			v := expect(t, cfg, false, "did not answer within 700ms")
			// The deadline is the check's contract with keepalived.
			if took := time.Since(start); took > 700*time.Millisecond+300*time.Millisecond {
				t.Fatalf("frozen server answered after %s, deadline 700ms", took)
			}
			t.Logf("frozen: %s (%s)", v.Reason, v.Took)
			s.Thaw()
			waitFor(t, cfg, true, "writer", 10*time.Second)
		})
	}
}

func TestRealUnreachable(t *testing.T) {
	dir := t.TempDir()
	port, err := mariadbtest.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	nope := filepath.Join(dir, "nope.sock")
	for name, tc := range map[string]struct{ extra, want string }{
		// Worded as a dead server, or as a typo when another test's
		// mariadbd listens on this machine meanwhile: both name the path.
		"missing socket": {fmt.Sprintf("socket = %q\n", nope), fmt.Sprintf("no socket at %q", nope)},
		"closed port":    {fmt.Sprintf("host = \"127.0.0.1\"\nport = %d\n", port), "not running"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "c.toml")
			os.WriteFile(p, []byte(fmt.Sprintf("state_dir = %q\n[mysql]\n%s", dir, tc.extra)), 0o600)
			cfg, err := config.Load(p)
			if err != nil {
				t.Fatal(err)
			}
			v := Run(context.Background(), cfg)
			if v.Fit || !strings.Contains(v.Reason, tc.want) {
				t.Fatalf("got %+v", v)
			}
		})
	}
}

func TestRealOptionFileCredentials(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 9})
	mustExec(t, s, "SET GLOBAL read_only=OFF")
	dir := t.TempDir()
	opt, err := mariadbtest.WriteOptionFile(dir, s, mariadbtest.CheckUser, mariadbtest.CheckPassword)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "vipguard.toml")
	os.WriteFile(p, []byte(fmt.Sprintf("state_dir = %q\n[mysql]\ndefaults_file = %q\n", dir, opt)), 0o644)
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MySQL.User != mariadbtest.CheckUser || cfg.MySQL.Host != "127.0.0.1" || cfg.MySQL.Port != s.Port {
		t.Fatalf("option file not applied: %+v", cfg.MySQL)
	}
	expect(t, cfg, true, "writer")

	// A wrong password in the option file is unfit, with the server's word.
	bad := filepath.Join(dir, "bad.cnf")
	os.WriteFile(bad, []byte(fmt.Sprintf("[client]\nuser=%s\npassword=wrong\nhost=127.0.0.1\nport=%d\n", mariadbtest.CheckUser, s.Port)), 0o600)
	os.WriteFile(p, []byte(fmt.Sprintf("state_dir = %q\n[mysql]\ndefaults_file = %q\n", dir, bad)), 0o644)
	if cfg, err = config.Load(p); err != nil {
		t.Fatal(err)
	}
	expect(t, cfg, false, "Access denied")

	// The least-privileged account also reads a standby's replication.
	os.WriteFile(p, []byte(fmt.Sprintf("state_dir = %q\n[mysql]\ndefaults_file = %q\n", dir, opt)), 0o644)
	cfg, _ = config.Load(p)
	mustExec(t, s, "SET GLOBAL read_only=ON")
	expect(t, cfg, false, "not replicating from any source")
}
