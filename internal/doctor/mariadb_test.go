package doctor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/agent"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
	"github.com/vipguard/vipguard/testsupport/nettest"
)

// The account the README's first "Required grants" block creates, made
// exactly as written there (only the name and password differ).
const (
	docUser = "vgdoc"
	docPass = "vgdoc-pass"
)

// readmeGrants returns the statements of the README's block for MariaDB
// 10.5.9 and later, for 'vgdoc'@host.
func readmeGrants(t *testing.T, host string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(b), "-- MariaDB 10.5.9 and later")
	if !ok {
		t.Fatal("README has no MariaDB 10.5.9 grants block")
	}
	block, _, _ = strings.Cut(block, "\n\n")
	var stmts []string
	for _, s := range strings.Split(block, ";") {
		s = strings.TrimSpace(s[strings.Index(s, "\n")+1:])
		if s == "" {
			continue
		}
		s = strings.ReplaceAll(s, "'vipguard'@'localhost'", "'"+docUser+"'@'"+host+"'")
		s = strings.ReplaceAll(s, "'…'", "'"+docPass+"'")
		stmts = append(stmts, s)
	}
	if len(stmts) != 3 {
		t.Fatalf("README block: %q", stmts)
	}
	return stmts
}

type docPair struct {
	a, b *mariadbtest.Server
	cfg  *config.Config
}

// setupPair is a correct pair: a the writer, b the standby, both with the
// README's account, sync_binlog=1 in their options; a config for a with b as the peer,
// b's agentcheck serving, and a learned witness that answers.
func setupPair(t *testing.T) *docPair {
	ctx := context.Background()
	durable := []string{"--sync-binlog=1"}
	a, b := mariadbtest.Pair(t, mariadbtest.PairOptions{A: mariadbtest.Options{Args: durable}, B: mariadbtest.Options{Args: durable}})
	for _, s := range []*mariadbtest.Server{a, b} {
		stmts := []string{"SET SESSION sql_log_bin=0"}
		for _, h := range []string{"localhost", "%"} {
			stmts = append(stmts, readmeGrants(t, h)...)
		}
		if err := s.Exec(ctx, stmts...); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Exec(ctx, "SET GLOBAL read_only=OFF"); err != nil {
		t.Fatal(err)
	}
	// b's agentcheck, on its own config.
	bcfg := writeConfig(t, fmt.Sprintf("[mysql]\nsocket = %q\nuser = %q\npassword = %q\n", b.Socket, docUser, docPass))
	srv := agent.NewServer(bcfg, slog.New(slog.DiscardHandler))
	srv.Poller.PollOnce(ctx)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(sctx, l) }()
	t.Cleanup(func() { cancel(); <-done })

	_, wport, _ := net.SplitHostPort(nettest.Refusing(t))
	cfg := writeConfig(t, fmt.Sprintf("[mysql]\nsocket = %q\nuser = %q\npassword = %q\n[peer]\nhost = %q\nport = %d\nagent = %q\n[check]\nlearned_witness_port = %s\n",
		a.Socket, docUser, docPass, b.Host, b.Port, l.Addr().String(), wport))
	now := time.Now()
	data, _ := witness.Encode([]witness.Learned{{IP: netip.MustParseAddr("127.0.0.1"), FirstSeen: now.Add(-time.Minute), LastSeen: now, Asks: 60}})
	if err := state.Dir(cfg.StateDir).WriteLearnedWitnesses(data); err != nil {
		t.Fatal(err)
	}
	return &docPair{a: a, b: b, cfg: cfg}
}

func writeConfig(t *testing.T, body string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	sd := filepath.Join(dir, "state")
	if err := os.Mkdir(sd, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "vipguard.toml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf("state_dir = %q\n", sd)+body), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (p *docPair) run(t *testing.T) []Result {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none.conf")
	return Run(context.Background(), p.cfg, Options{KeepalivedConf: none, HAProxyConf: none})
}

// only asserts that every line is OK (keepalived.conf and haproxy.cfg
// absent: SKIP)
// except node/check, which must be at level.
func only(t *testing.T, name string, rs []Result, node, check string, level Level) {
	t.Helper()
	seen := false
	for _, r := range rs {
		want := OK
		switch {
		case r.Node == node && r.Check == check:
			want, seen = level, true
		case r.Check == "keepalived.conf" || r.Check == "haproxy.agent_check":
			want = Skip
		}
		if r.Level != want {
			t.Errorf("%s: %s (want %s)", name, r, want)
		}
	}
	if node != "" && !seen {
		t.Errorf("%s: no %s/%s line", name, node, check)
	}
}

// restart stops b and starts it with opts changed, waiting until both
// directions replicate again.
func (p *docPair) restart(t *testing.T, change func(o *mariadbtest.Options)) {
	t.Helper()
	ctx := context.Background()
	p.b.Stop()
	change(&p.b.Opts)
	if err := p.b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*mariadbtest.Server{p.a, p.b} {
		if err := s.WaitReplicating(ctx, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDoctorPair: doctor on a correct pair says OK everywhere, and each
// misconfiguration it checks flips exactly its own line.
func TestDoctorPair(t *testing.T) {
	p := setupPair(t)
	ctx := context.Background()
	only(t, "correct pair", p.run(t), "", "", OK)

	for _, c := range []struct {
		name        string
		on          *mariadbtest.Server
		set, undo   []string
		node, check string
		level       Level
	}{
		{"server_id", p.b, []string{"SET GLOBAL server_id=1"}, []string{"SET GLOBAL server_id=2"}, "pair", "server_id", Fail},
		{"gtid_domain_id", p.b, []string{"SET GLOBAL gtid_domain_id=1"}, []string{"SET GLOBAL gtid_domain_id=2"}, "pair", "gtid_domain_id", Fail},
		{"binlog_format", p.b, []string{"SET GLOBAL binlog_format='MIXED'"}, []string{"SET GLOBAL binlog_format='ROW'"}, "peer", "binlog_format", Fail},
		{"sync_binlog", p.b, []string{"SET GLOBAL sync_binlog=0"}, []string{"SET GLOBAL sync_binlog=1"}, "peer", "sync_binlog", Warn},
		{"innodb_flush_log_at_trx_commit", p.a, []string{"SET GLOBAL innodb_flush_log_at_trx_commit=2"}, []string{"SET GLOBAL innodb_flush_log_at_trx_commit=1"}, "local", "innodb_flush_log_at_trx_commit", Warn},
		{"auto_increment_offset", p.b, []string{"SET GLOBAL auto_increment_offset=" + mustQuery(t, p.a, "SELECT @@auto_increment_offset")},
			[]string{"SET GLOBAL auto_increment_offset=" + mustQuery(t, p.b, "SELECT @@auto_increment_offset")}, "pair", "auto_increment", Fail},
		{"semi-sync on one side", p.b, []string{"SET GLOBAL rpl_semi_sync_master_enabled=ON"}, []string{"SET GLOBAL rpl_semi_sync_master_enabled=OFF"}, "peer", "semi_sync", Warn},
		{"semi-sync replica side on one node", p.b, []string{"SET GLOBAL rpl_semi_sync_slave_enabled=ON"}, []string{"SET GLOBAL rpl_semi_sync_slave_enabled=OFF"}, "pair", "semi_sync", Warn},
		{"replication stopped", p.b, []string{"STOP SLAVE"}, []string{"START SLAVE"}, "peer", "replication", Fail},
		{"grants", p.b, []string{"REVOKE READ_ONLY ADMIN ON *.* FROM 'vgdoc'@'%'"}, []string{"GRANT READ_ONLY ADMIN ON *.* TO 'vgdoc'@'%'"}, "peer", "grants", Fail},
		{"grants here", p.a, []string{"REVOKE CONNECTION ADMIN ON *.* FROM 'vgdoc'@'localhost'"}, []string{"GRANT CONNECTION ADMIN ON *.* TO 'vgdoc'@'localhost'"}, "local", "grants", Fail},
	} {
		if err := c.on.Exec(ctx, append([]string{"SET SESSION sql_log_bin=0"}, c.set...)...); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		only(t, c.name, p.run(t), c.node, c.check, c.level)
		if err := c.on.Exec(ctx, append([]string{"SET SESSION sql_log_bin=0"}, c.undo...)...); err != nil {
			t.Fatalf("%s: undo: %v", c.name, err)
		}
		if err := c.on.WaitReplicating(ctx, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	// More than it needs: WARN on exactly the grants line, whose fix, run
	// as written, leaves the README's block (OK again).
	if err := p.b.Exec(ctx, "SET SESSION sql_log_bin=0", "GRANT ALL PRIVILEGES ON *.* TO 'vgdoc'@'%' WITH GRANT OPTION"); err != nil {
		t.Fatal(err)
	}
	rs := p.run(t)
	only(t, "all privileges", rs, "peer", "grants", Warn)
	if g := Find(rs, "peer", "grants"); len(g) == 1 {
		runFix(t, p.b, g[0].Fix)
	}
	only(t, "restored", p.run(t), "", "", OK)

	// What needs a restart: log_slave_updates, and read_only at start.
	p.restart(t, func(o *mariadbtest.Options) { o.Args = append(o.Args, "--log-slave-updates=OFF") })
	only(t, "log_slave_updates off", p.run(t), "peer", "log_slave_updates", Fail)
	p.restart(t, func(o *mariadbtest.Options) { o.Args = o.Args[:len(o.Args)-1] })
	only(t, "log_slave_updates back", p.run(t), "", "", OK)
	p.restart(t, func(o *mariadbtest.Options) { o.ReadOnly = false })
	only(t, "starts writable", p.run(t), "peer", "read_only_at_start", Fail)
}

func mustQuery(t *testing.T, s *mariadbtest.Server, q string) string {
	t.Helper()
	v, err := s.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strconv.Atoi(v); err != nil {
		t.Fatalf("%s: %q", q, v)
	}
	return v
}

// The local node reads mysqld's own options: started without read_only
// it fails, whatever read_only is now.
func TestDoctorLocalStartOptions(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 7})
	if err := s.Exec(context.Background(), "SET GLOBAL read_only=ON"); err != nil {
		t.Fatal(err)
	}
	t0 := probeTarget(s)
	got := ReadServer(context.Background(), "local", t0, true)
	if got.Err != nil || got.StartOptions == nil {
		t.Fatalf("%v %q", got.Err, got.StartOptionsNote)
	}
	if r := checkReadOnlyAtStart(got); r.Level != Fail {
		t.Errorf("started writable: %s", r)
	}
}

func probeTarget(s *mariadbtest.Server) probe.Target {
	return probe.Target{Socket: s.Socket, User: "root", ConnectTimeout: time.Second, QueryTimeout: time.Second}
}

// runFix runs a result's fix ("stmt; stmt") on s as root, unlogged.
func runFix(t *testing.T, s *mariadbtest.Server, fix string) {
	t.Helper()
	if fix == "" {
		t.Fatal("no fix")
	}
	if err := s.Exec(context.Background(), append([]string{"SET SESSION sql_log_bin=0"}, strings.Split(fix, "; ")...)...); err != nil {
		t.Fatalf("fix %q: %v", fix, err)
	}
}

// TestGrantsExcessFix: on a real server, each kind of surplus is a WARN,
// and its fix, run as written, leaves exactly the README's block (and the
// heartbeat table): OK, with nothing missing in between.
func TestGrantsExcessFix(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 9})
	ctx := context.Background()
	const hb = "percona.heartbeat"
	if err := s.Exec(ctx, "CREATE DATABASE percona", "CREATE TABLE percona.heartbeat (ts varchar(26))",
		"CREATE DATABASE app", "CREATE TABLE app.t (a int, `b c` int)", "CREATE PROCEDURE app.p() SELECT 1"); err != nil {
		t.Fatal(err)
	}
	target := probe.Target{Socket: s.Socket, User: docUser, Password: docPass, ConnectTimeout: time.Second, QueryTimeout: time.Second}
	for _, c := range []struct {
		name  string
		extra []string
	}{
		{"all privileges, a database, columns, a routine", []string{
			"GRANT ALL PRIVILEGES ON *.* TO 'vgdoc'@'localhost' WITH GRANT OPTION",
			"GRANT ALL ON app.* TO 'vgdoc'@'localhost'",
			"GRANT SELECT (a, `b c`), INSERT ON app.t TO 'vgdoc'@'localhost'",
			"GRANT EXECUTE ON PROCEDURE app.p TO 'vgdoc'@'localhost'",
		}},
		{"super, data privileges, heartbeat only through its database", []string{
			"REVOKE SELECT ON percona.heartbeat FROM 'vgdoc'@'localhost'",
			"GRANT SUPER, SELECT, RELOAD, SHUTDOWN, FILE, CREATE USER ON *.* TO 'vgdoc'@'localhost'",
			"GRANT SELECT ON percona.* TO 'vgdoc'@'localhost'",
		}},
		{"all privileges on the heartbeat table", []string{"GRANT ALL ON percona.heartbeat TO 'vgdoc'@'localhost' WITH GRANT OPTION"}},
	} {
		stmts := []string{"DROP USER IF EXISTS 'vgdoc'@'localhost'"}
		stmts = append(stmts, readmeGrants(t, "localhost")...)
		stmts = append(stmts, "GRANT SELECT ON percona.heartbeat TO 'vgdoc'@'localhost'")
		if err := s.Exec(ctx, append(stmts, c.extra...)...); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		r := checkGrants(ReadServer(ctx, "local", target, false), hb)
		if r.Level != Warn {
			t.Errorf("%s: %s", c.name, r)
			continue
		}
		for _, stmt := range strings.Split(r.Fix, "; ") {
			runFix(t, s, stmt)
			if r := checkGrants(ReadServer(ctx, "local", target, false), hb); r.Level == Fail {
				t.Errorf("%s: after %q: %s", c.name, stmt, r)
			}
		}
		if r := checkGrants(ReadServer(ctx, "local", target, false), hb); r.Level != OK {
			t.Errorf("%s: after the fix: %s", c.name, r)
		}
	}
}
