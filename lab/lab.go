// Package lab is vipguard's failover lab: real MariaDB, keepalived and
// HAProxy on one machine, in network namespaces the lab creates, under
// injected faults. It is the project's end-to-end test suite (lab_test.go,
// run with VIPGUARD_LAB=1), its demo and its failover benchmark
// (tools/vglab).
//
// Topology: namespaces <prefix>-db1, -db2, -proxy, -client, each with one
// veth into a bridge that lives in its own namespace (<prefix>-sw), so the
// root namespace's network is never touched. Addresses are from 192.0.2.0/24
// only. keepalived and HAProxy run from the example files in examples/,
// templated for paths and interface names only, so the lab proves them.
//
// Every run lives under /run/vglab/<prefix>, a root-owned 0755 chain as
// keepalived's enable_script_security requires; Close removes it all, and
// CleanStale removes what a killed run left behind.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// Options tune Start.
type Options struct {
	// StandIn runs the lab's stand-in notify from keepalived (a shell
	// script that only toggles read_only: today's reality) instead of
	// cmd/notify, vipguard's fence and promotion engine (the default).
	StandIn bool
	// SemiSync starts db1 and db2 with MariaDB's built-in semi-synchronous
	// replication enabled both ways (master and slave side, 10 s timeout).
	// The lab does nothing else about it: who waits for ACKs and who sends
	// them is notify's job.
	SemiSync bool
	// Replica adds the read replica (AddReplica): db3 replicating from the
	// VIP by GTID, agentcheck on it, in HAProxy's reader backend.
	Replica bool
	// FastVRRP runs keepalived from examples/keepalived/keepalived-fast.conf
	// (VRRPv3, sub-second advert_int) instead of the conservative default.
	FastVRRP bool
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Node is one database host: mariadbd, keepalived and a vipguard config.
// The read replica (db3) has no peer and runs no keepalived.
type Node struct {
	Name, Peer string // "db1", "db2"; "db3" with Peer ""
	Addr       string
	DB         *mariadbtest.Server
	Dir        string // the node's run directory
	Config     string // vipguard.toml
	StateDir   string
	NotifyLog  string // notify's log (cmd/notify's step log, or the stand-in's lines)
	AgentLog   string // agentcheck serve's log
	kaConf     string
	keepalived *proc
	agent      *proc
}

// Lab is one running lab.
type Lab struct {
	Opts   Options
	Net    *Net
	Root   string // source tree
	Dir    string // /run/vglab/<prefix>
	Bin    string // built binaries
	Nodes  map[string]*Node
	Proxy  struct{ Config, StatsSock, Log string }
	haprox *proc

	closeOnce sync.Once
	closeErr  error
}

func (l *Lab) logf(format string, args ...any) {
	if l.Opts.Logf != nil {
		l.Opts.Logf(format, args...)
	}
}

// Node returns db1, db2 or (with the replica) db3.
func (l *Lab) Node(name string) *Node { return l.Nodes[name] }

// Other returns the peer of name.
func (l *Lab) Other(name string) *Node { return l.Nodes[l.Nodes[name].Peer] }

// Preflight says why a lab cannot start here, nil when it can.
func Preflight() error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, keepalived, HAProxy)")
	}
	var missing []string
	for _, b := range []string{"ip", "keepalived", "haproxy", "mariadb", "timeout"} {
		if _, err := lookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing programs: %s (apt-get install iproute2 keepalived haproxy mariadb-server)", strings.Join(missing, ", "))
	}
	if err := mariadbtest.Available(); err != nil {
		return err
	}
	probe := fmt.Sprintf("vgprobe%d", os.Getpid()%100000)
	if _, err := run(context.Background(), "ip", "netns", "add", probe); err != nil {
		return fmt.Errorf("cannot create network namespaces: %w", err)
	}
	_, _ = run(context.Background(), "ip", "netns", "del", probe)
	return nil
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// Start builds the binaries and brings the whole lab up: network, the
// replicating pair, keepalived on both nodes (db1 ends up holding the VIP)
// and HAProxy. On any error everything started so far is torn down.
func Start(ctx context.Context, o Options) (l *Lab, err error) {
	if err := Preflight(); err != nil {
		return nil, err
	}
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(RunRoot, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(RunRoot, 0o755); err != nil {
		return nil, err
	}
	if cleaned, err := CleanStale(); err != nil {
		return nil, fmt.Errorf("cleaning stale labs %v: %w", cleaned, err)
	} else if len(cleaned) > 0 && o.Logf != nil {
		o.Logf("lab: cleaned stale labs %v", cleaned)
	}
	prefix, err := pickPrefix()
	if err != nil {
		return nil, err
	}
	l = &Lab{Opts: o, Net: &Net{Prefix: prefix}, Root: root, Dir: filepath.Join(RunRoot, prefix),
		Nodes: map[string]*Node{}}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	l.Bin = filepath.Join(l.Dir, "bin")
	for _, d := range []string{l.Bin, filepath.Join(l.Dir, "proxy"), filepath.Join(l.Dir, "client")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return l, err
		}
	}
	start := time.Now()
	if err := build(ctx, root, l.Bin, !o.StandIn); err != nil {
		return l, err
	}
	if err := os.WriteFile(filepath.Join(l.Bin, "naive-notify"), []byte(naiveNotify), 0o755); err != nil {
		return l, err
	}
	l.logf("lab %s: built binaries in %s (%s)", prefix, l.Bin, time.Since(start).Round(time.Millisecond))
	if err := l.Net.Setup(ctx); err != nil {
		return l, err
	}
	if err := l.startDatabases(ctx); err != nil {
		return l, err
	}
	l.logf("lab %s: mariadb pair replicating (%s)", prefix, time.Since(start).Round(time.Millisecond))
	for _, n := range []*Node{l.Nodes["db1"], l.Nodes["db2"]} {
		if err := l.writeNodeConfig(n); err != nil {
			return l, err
		}
		// agentcheck first: HAProxy checks it from its first second.
		if err := l.StartAgent(n.Name); err != nil {
			return l, err
		}
	}
	// db1 first, alone, so it deterministically becomes the first holder.
	if err := l.StartKeepalived("db1"); err != nil {
		return l, err
	}
	if err := l.WaitHolder(ctx, "db1", 30*time.Second); err != nil {
		return l, fmt.Errorf("%w\n%s", err, l.Diagnostics())
	}
	if err := l.StartKeepalived("db2"); err != nil {
		return l, err
	}
	if err := l.startHAProxy(ctx); err != nil {
		return l, fmt.Errorf("%w\n%s", err, l.Diagnostics())
	}
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		return l, fmt.Errorf("%w\n%s", err, l.Diagnostics())
	}
	l.logf("lab %s: up, db1 holds the VIP (%s)", prefix, time.Since(start).Round(time.Millisecond))
	if o.Replica {
		if err := l.AddReplica(ctx); err != nil {
			return l, fmt.Errorf("%w\n%s", err, l.Diagnostics())
		}
	}
	return l, nil
}

func (l *Lab) startDatabases(ctx context.Context) error {
	opts := func(name string, id uint32) mariadbtest.Options {
		dir := filepath.Join(l.Dir, name)
		return mariadbtest.Options{ServerID: id, DomainID: id, BindAddress: "0.0.0.0", Host: hostAddr[name],
			Port: MySQLPort, Wrap: l.Net.Wrap(name), Dir: dir}
	}
	for _, name := range []string{"db1", "db2"} {
		if err := os.MkdirAll(filepath.Join(l.Dir, name, "state"), 0o755); err != nil {
			return err
		}
	}
	// Not mariadbtest.NewPair: its two installs run in parallel, and a
	// bootstrapping mariadbd deletes every #sql* file in its tmpdir, including
	// the other bootstrap's (seen here: "Unknown table 'mysql.tmp_user_sys'").
	// So: one at a time, and a private tmpdir per server, away from the
	// servers other tests start with the default /tmp.
	var servers []*mariadbtest.Server
	for _, name := range []string{"db1", "db2"} {
		tmp := filepath.Join(l.Dir, name, "tmp")
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return err
		}
		o := opts(name, uint32(len(servers)+1))
		o.ReadOnly = true
		o.Args = []string{"--tmpdir=" + tmp}
		if l.Opts.SemiSync {
			o.Args = append(o.Args, semiSyncArgs...)
		}
		s, err := launchWithTmpdir(ctx, o, tmp)
		if err != nil {
			return fmt.Errorf("starting mariadbd on %s: %w", name, err)
		}
		servers = append(servers, s)
		// Recorded at once so Close destroys it whatever fails next.
		l.Nodes[name] = &Node{Name: name, DB: s}
	}
	a, b := servers[0], servers[1]
	if err := a.ReplicateFrom(ctx, b); err != nil {
		return err
	}
	if err := b.ReplicateFrom(ctx, a); err != nil {
		return err
	}
	for _, n := range []struct {
		name, peer string
		s          *mariadbtest.Server
	}{{"db1", "db2", a}, {"db2", "db1", b}} {
		dir := filepath.Join(l.Dir, n.name)
		l.Nodes[n.name] = &Node{Name: n.name, Peer: n.peer, Addr: hostAddr[n.name], DB: n.s, Dir: dir,
			Config: filepath.Join(dir, "vipguard.toml"), StateDir: filepath.Join(dir, "state"),
			NotifyLog: filepath.Join(dir, "notify.log"), AgentLog: filepath.Join(dir, "agentcheck.log"),
			kaConf: filepath.Join(dir, "keepalived.conf")}
		// HAProxy's mysql-check account (examples/haproxy), local to each
		// node; and vipguard's account, with the grants README.md lists for
		// all three binaries, on the socket and for the peer (notify fences
		// the peer over TCP with the same account).
		if err := n.s.Exec(ctx, "SET SESSION sql_log_bin=0", "CREATE USER 'haproxy_check'@'"+ProxyAddr+"'"); err != nil {
			return err
		}
		for _, host := range []string{"localhost", "192.0.2.%"} {
			acct := fmt.Sprintf("'%s'@'%s'", AdminUser, host)
			if err := n.s.Exec(ctx, "SET SESSION sql_log_bin=0", "CREATE USER "+acct+" IDENTIFIED BY '"+AdminPassword+"'",
				"GRANT "+AdminGrants+" ON *.* TO "+acct); err != nil {
				return err
			}
		}
	}
	// The lab's table is created once on db1 and replicates to db2.
	if err := a.Exec(ctx, "CREATE TABLE vgtest.lab_writes (id BIGINT AUTO_INCREMENT PRIMARY KEY, "+
		"k VARCHAR(96) NOT NULL UNIQUE, path VARCHAR(8) NOT NULL, server_id INT NOT NULL, "+
		"ts DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))"); err != nil {
		return err
	}
	return b.SyncWith(ctx, a, 20*time.Second)
}

// semiSyncArgs enable MariaDB's built-in semi-sync on a pair node, both
// sides, as the measured installation of issue 10 did.
var semiSyncArgs = []string{"--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-slave-enabled=ON",
	"--rpl-semi-sync-master-timeout=10000"}

// tmpdirMu serialises the TMPDIR switch: mariadb-install-db takes its
// tmpdir from the environment only.
var tmpdirMu sync.Mutex

func launchWithTmpdir(ctx context.Context, o mariadbtest.Options, tmp string) (*mariadbtest.Server, error) {
	tmpdirMu.Lock()
	defer tmpdirMu.Unlock()
	old, had := os.LookupEnv("TMPDIR")
	os.Setenv("TMPDIR", tmp)
	defer func() {
		if had {
			os.Setenv("TMPDIR", old)
		} else {
			os.Unsetenv("TMPDIR")
		}
	}()
	return mariadbtest.Launch(ctx, o)
}

// The account mysqlcheck, agentcheck and notify use in the lab, with the
// grants README.md documents for MariaDB (read-only checks plus what notify
// needs to fence and promote).
const (
	AdminUser     = "vgadmin"
	AdminPassword = "vgadmin-pass"
	AdminGrants   = "PROCESS, REPLICATION CLIENT, SLAVE MONITOR, BINLOG MONITOR, " +
		"CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN"
)

// NotifyPolicy is the [notify] part of a node's config that the tests vary.
type NotifyPolicy struct {
	Policy           string        // "reliability" or "availability"
	PromotionTimeout time.Duration // bound on the promotion gate
}

// DefaultNotifyPolicy is what the lab runs unless a test says otherwise.
var DefaultNotifyPolicy = NotifyPolicy{Policy: "reliability", PromotionTimeout: 10 * time.Second}

// writeNodeConfig writes the node's vipguard.toml (checked by mysqlcheck
// and agentcheck as monitoring user over the socket, credentials in an
// option file; agentcheck listening on the node's own address) and its
// keepalived.conf from the example.
func (l *Lab) writeNodeConfig(n *Node) error {
	if err := writeClientCnf(n); err != nil {
		return err
	}
	if err := l.WriteNodeTOML(n, DefaultNotifyPolicy); err != nil {
		return err
	}
	example := "keepalived/keepalived.conf"
	if l.Opts.FastVRRP {
		example = "keepalived/keepalived-fast.conf"
	}
	ex, err := readExample(l.Root, example)
	if err != nil {
		return err
	}
	// The example's notify line runs cmd/notify; with StandIn a script
	// that only toggles read_only emulates what most installations run
	// today, writing the outcome file agentcheck needs to call a
	// writable node the writer.
	p := KeepalivedParams{Self: n.Name, Peer: n.Peer, Interface: l.Net.IfName(n.Name),
		Mysqlcheck: filepath.Join(l.Bin, "mysqlcheck"), Config: n.Config, Notify: filepath.Join(n.Dir, "notify"),
		TrackFile: filepath.Join(n.StateDir, "mysql.track")}
	if l.Opts.StandIn {
		p.NotifyLine = fmt.Sprintf(`notify "%s %s %s %s"`, filepath.Join(l.Bin, "naive-notify"), n.DB.Socket, n.NotifyLog, n.StateDir)
	} else {
		// keepalived runs notify with stderr on /dev/null, and notify then
		// logs to /dev/log, which the lab's namespaces lack: a wrapper in
		// place of /usr/libexec/vipguard/notify keeps the step log in the
		// node's directory.
		wrapper := fmt.Sprintf("#!/bin/sh\n# lab: cmd/notify with its step log kept in %s\nexec %s \"$@\" 2>>%s\n",
			n.NotifyLog, filepath.Join(l.Bin, "notify"), n.NotifyLog)
		if err := os.WriteFile(p.Notify, []byte(wrapper), 0o755); err != nil {
			return err
		}
	}
	conf, err := RenderKeepalived(ex, p)
	if err != nil {
		return err
	}
	return os.WriteFile(n.kaConf, conf, 0o644)
}

// clientCnf is the node's option file with vipguard's account.
func clientCnf(n *Node) string { return filepath.Join(n.Dir, "client.cnf") }

func writeClientCnf(n *Node) error {
	return os.WriteFile(clientCnf(n), fmt.Appendf(nil, "[client]\nuser = %s\npassword = \"%s\"\nsocket = %s\n",
		AdminUser, AdminPassword, n.DB.Socket), 0o600)
}

// mysqlAndAgentTOML is what every lab node's vipguard.toml says about its
// own server and agentcheck (listening on the node's own address).
func mysqlAndAgentTOML(n *Node) (mysql, agent string) {
	mysql = fmt.Sprintf("[mysql]\nsocket = %q\ndefaults_file = %q\n", n.DB.Socket, clientCnf(n))
	agent = fmt.Sprintf("[agent]\nlisten = \"%s:%d\"\nhttp_listen = \"%s:%d\"\ninterval = %q\nstale_after = %q\n",
		n.Addr, AgentPort, n.Addr, AgentHTTPPort, AgentInterval.String(), AgentStaleAfter.String())
	return mysql, agent
}

// writeTOML replaces a node's vipguard.toml atomically (notify and
// agentcheck may read it at any moment).
func writeTOML(n *Node, toml string) error {
	tmp := n.Config + ".tmp"
	if err := os.WriteFile(tmp, []byte(toml), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, n.Config)
}

// WriteNodeTOML (re)writes a node's vipguard.toml with the given notify
// policy. notify reads it on every event, so a change applies to the next.
func (l *Lab) WriteNodeTOML(n *Node, np NotifyPolicy) error {
	mysql, agent := mysqlAndAgentTOML(n)
	toml := fmt.Sprintf(`# vipguard config of lab node %s (written by the lab)
state_dir = %q

%s
[peer]
host = %q
port = %d

[vip]
address = %q

# No [check] witnesses: as shipped. agentcheck learns the proxy host from
# HAProxy's agent-checks and mysqlcheck and notify ask it on port 9, where
# nothing listens (a reset is the answer): a holder cut off from it is
# unfit (the partition fault).

[notify]
instance = "VI_MYSQL"
policy = %q
promotion_timeout = %q

%s`, n.Name, n.StateDir, mysql, hostAddr[n.Peer], MySQLPort, VIP, np.Policy, np.PromotionTimeout.String(), agent)
	return writeTOML(n, toml)
}

// StartKeepalived starts (or restarts) keepalived on a node, VRRP only,
// foreground, logging to <node>/keepalived.log.
func (l *Lab) StartKeepalived(name string) error {
	n := l.Nodes[name]
	if n.keepalived.running() {
		return nil
	}
	bin, err := lookPath("keepalived")
	if err != nil {
		return err
	}
	argv := append(l.Net.Wrap(name), bin, "-n", "-l", "-D", "-G", "-P",
		"-f", n.kaConf,
		"-p", filepath.Join(n.Dir, "keepalived.pid"),
		"-r", filepath.Join(n.Dir, "keepalived-vrrp.pid"),
		"-c", filepath.Join(n.Dir, "keepalived-checkers.pid"))
	p, err := startProc("keepalived "+name, argv, filepath.Join(n.Dir, "keepalived.log"))
	if err != nil {
		return err
	}
	n.keepalived = p
	return nil
}

// AgentInterval and AgentStaleAfter are agentcheck's [agent] interval and
// stale_after in the lab (the product's defaults, written out so the tests
// can state their bounds).
const (
	AgentInterval   = time.Second
	AgentStaleAfter = 3 * time.Second
)

// StartAgent starts agentcheck serve on a node (if it is not running),
// with the node's config, logging to <node>/agentcheck.log, and waits until
// it answers on its agent port.
func (l *Lab) StartAgent(name string) error {
	n := l.Nodes[name]
	if n.agent.running() {
		return nil
	}
	argv := append(l.Net.Wrap(name), filepath.Join(l.Bin, "agentcheck"), "-c", n.Config, "serve")
	p, err := startProc("agentcheck "+name, argv, n.AgentLog)
	if err != nil {
		return err
	}
	n.agent = p
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := l.AgentAnswer(context.Background(), name, "health"); err == nil {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("agentcheck on %s exited at start:\n%s", name, tailFile(n.AgentLog, 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("agentcheck on %s does not answer within 15s:\n%s", name, tailFile(n.AgentLog, 20))
}

// StopKeepalived stops keepalived cleanly (SIGTERM): it releases the VIP
// and runs notify STOP.
func (l *Lab) StopKeepalived(name string) {
	l.Nodes[name].keepalived.stop(10 * time.Second)
}

// KeepalivedRunning reports whether keepalived runs on name.
func (l *Lab) KeepalivedRunning(name string) bool { return l.Nodes[name].keepalived.running() }

var stateRE = regexp.MustCompile(`Entering (MASTER|BACKUP|FAULT) STATE`)

// KeepalivedState is the last VRRP state keepalived logged on the node
// ("STOPPED" when it does not run, "INIT" before its first transition).
func (l *Lab) KeepalivedState(name string) string {
	n := l.Nodes[name]
	if !n.keepalived.running() {
		return "STOPPED"
	}
	b, err := os.ReadFile(filepath.Join(n.Dir, "keepalived.log"))
	if err != nil {
		return "UNKNOWN"
	}
	// Only what this run of keepalived logged.
	if i := strings.LastIndex(string(b), "=== "); i >= 0 {
		b = b[i:]
	}
	m := stateRE.FindAllSubmatch(b, -1)
	if len(m) == 0 {
		return "INIT"
	}
	return string(m[len(m)-1][1])
}

func (l *Lab) startHAProxy(ctx context.Context) error {
	dir := filepath.Join(l.Dir, "proxy")
	l.Proxy.Config = filepath.Join(dir, "haproxy.cfg")
	l.Proxy.StatsSock = filepath.Join(dir, "admin.sock")
	l.Proxy.Log = filepath.Join(dir, "haproxy.log")
	if err := l.writeHAProxyConfig(ctx); err != nil {
		return err
	}
	// db1 holds the VIP and was promoted: agentcheck makes it the writer.
	return l.runHAProxy("db1")
}

// writeHAProxyConfig renders the example for the lab as it is now (with
// the replica's server line if db3 runs) and has haproxy check it.
func (l *Lab) writeHAProxyConfig(ctx context.Context) error {
	ex, err := readExample(l.Root, "haproxy/haproxy.cfg")
	if err != nil {
		return err
	}
	cfg, err := RenderHAProxy(ex, l.Proxy.StatsSock, l.Nodes[ReplicaHost] != nil)
	if err != nil {
		return err
	}
	if err := os.WriteFile(l.Proxy.Config, cfg, 0o644); err != nil {
		return err
	}
	bin, err := lookPath("haproxy")
	if err != nil {
		return err
	}
	if out, err := run(ctx, bin, "-c", "-f", l.Proxy.Config); err != nil {
		return fmt.Errorf("haproxy rejects the example config: %w\n%s", err, out)
	}
	return nil
}

// RestartHAProxy stops haproxy and starts it again, as a package upgrade
// or a reload gone wrong would, and waits until it follows agentcheck
// again with writer UP.
func (l *Lab) RestartHAProxy(writer string) error {
	if l.haprox != nil {
		l.haprox.stop(5 * time.Second)
	}
	return l.runHAProxy(writer)
}

// runHAProxy starts haproxy on the written config and waits until it
// follows agentcheck: writer UP in the writer backend, its peer DOWN.
func (l *Lab) runHAProxy(writer string) error {
	bin, err := lookPath("haproxy")
	if err != nil {
		return err
	}
	p, err := startProc("haproxy", append(l.Net.Wrap("proxy"), bin, "-db", "-f", l.Proxy.Config), l.Proxy.Log)
	if err != nil {
		return err
	}
	l.haprox = p
	other := l.Nodes[writer].Peer
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := l.HAProxyServers(); err == nil && st["mysql_writer/"+writer] == "UP" && IsDown(st["mysql_writer/"+other]) {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("haproxy exited at start:\n%s", tailFile(l.Proxy.Log, 20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err := l.HAProxyServers()
	return fmt.Errorf("haproxy writer backend not %s UP, %s DOWN within 15s (%v %v):\n%s", writer, other, st, err, tailFile(l.Proxy.Log, 20))
}

// tailFile returns the last n lines of a file.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Diagnostics returns the tails of every log, for a failed test.
func (l *Lab) Diagnostics() string {
	var b strings.Builder
	for _, name := range []string{"db1", "db2"} {
		n := l.Nodes[name]
		if n == nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s keepalived.log\n%s\n", name, tailFile(filepath.Join(n.Dir, "keepalived.log"), 25))
		if !l.Opts.StandIn {
			fmt.Fprintf(&b, "--- %s state/outcome.json (cmd/notify)\n%s\n", name, tailFile(filepath.Join(n.StateDir, "outcome.json"), 15))
			fmt.Fprintf(&b, "--- %s notify.log (cmd/notify)\n%s\n", name, tailFile(n.NotifyLog, 25))
		} else {
			fmt.Fprintf(&b, "--- %s notify.log (stand-in)\n%s\n", name, tailFile(n.NotifyLog, 10))
		}
		fmt.Fprintf(&b, "--- %s agentcheck.log\n%s\n", name, tailFile(n.AgentLog, 10))
		fmt.Fprintf(&b, "--- %s mariadbd error log\n%s\n", name, n.DB.ErrorLog(10))
	}
	if n := l.Nodes[ReplicaHost]; n != nil && n.Dir != "" {
		fmt.Fprintf(&b, "--- %s (read replica) agentcheck.log\n%s\n", n.Name, tailFile(n.AgentLog, 10))
		fmt.Fprintf(&b, "--- %s mariadbd error log\n%s\n", n.Name, n.DB.ErrorLog(10))
	}
	if l.Proxy.Log != "" {
		fmt.Fprintf(&b, "--- haproxy.log\n%s\n", tailFile(l.Proxy.Log, 10))
		if l.haprox.running() {
			fmt.Fprintf(&b, "--- haproxy servers: %s\n", l.HAProxyView())
		}
	}
	return b.String()
}

// Close tears everything down: daemons, servers, namespaces, the run
// directory. It is safe to call more than once and from a signal handler.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		var errs []error
		l.haprox.stop(3 * time.Second)
		for _, n := range l.Nodes {
			n.keepalived.stop(3 * time.Second)
			n.agent.stop(3 * time.Second)
		}
		for _, n := range l.Nodes {
			if n.DB != nil {
				n.DB.Destroy()
			}
		}
		if l.Net != nil {
			if err := l.Net.Teardown(); err != nil {
				errs = append(errs, err)
			}
		}
		if l.Dir != "" {
			if err := os.RemoveAll(l.Dir); err != nil {
				errs = append(errs, err)
			}
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

func init() {
	// The driver logs dropped connections to stderr; in the lab they are
	// the expected result of the faults.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
}
