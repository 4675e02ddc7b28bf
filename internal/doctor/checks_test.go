package doctor

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
)

func TestOptionValue(t *testing.T) {
	for _, c := range []struct {
		opts         []string
		value, found bool
	}{
		{nil, false, false},
		{[]string{"--read-only"}, true, true},
		{[]string{"--read_only=ON"}, true, true},
		{[]string{"--read-only=0"}, false, true},
		{[]string{"--read-only=ON", "--skip-read-only"}, false, true},
		{[]string{"--skip-read-only", "--read_only=1"}, true, true},
		{[]string{"read_only = ON"}, true, true},
		{[]string{"--read-only-compressed=ON"}, false, false},
		{[]string{"--disable-read-only"}, false, true},
	} {
		v, f := optionValue(c.opts, "read_only")
		if v != c.value || f != c.found {
			t.Errorf("%q: got %v %v, want %v %v", c.opts, v, f, c.value, c.found)
		}
	}
}

// goodServer is a correctly set up node of a MariaDB pair.
func goodServer(node string, id int) *Server {
	other := 3 - id
	return &Server{Node: node, Target: node, Version: probe.Version{Flavor: probe.MariaDB, Major: 10, Minor: 11, Patch: 6},
		User: "vipguard@%",
		Vars: map[string]string{"server_id": itoa(id), "gtid_domain_id": itoa(id), "log_bin": "ON", "log_slave_updates": "ON",
			"binlog_format": "ROW", "read_only": "ON", "auto_increment_increment": "2", "auto_increment_offset": itoa(id),
			"sync_binlog": "1", "innodb_flush_log_at_trx_commit": "1", "rpl_semi_sync_master_enabled": "OFF", "rpl_semi_sync_slave_enabled": "OFF"},
		ReadOnlyOrigin: "CONFIG",
		Replicas: []probe.Replica{{SourceHost: "peer", SourcePort: 3306, SourceServerID: uint32(other), IORunning: probe.IOYes,
			SQLRunning: true, UsingGTID: "Slave_Pos"}},
		Grants: []string{"GRANT PROCESS, BINLOG MONITOR, CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, SLAVE MONITOR ON *.* TO `vipguard`@`%`"},
	}
}

func itoa(i int) string { return string(rune('0' + i)) }

// TestCheckServersFlips: a correct pair is OK everywhere, and each
// misconfiguration flips exactly its own line.
func TestCheckServersFlips(t *testing.T) {
	rs := CheckServers(goodServer("local", 1), goodServer("peer", 2), "")
	for _, r := range rs {
		if r.Level != OK {
			t.Errorf("correct pair: %s", r)
		}
	}
	for _, c := range []struct {
		name        string
		mutate      func(l, p *Server)
		node, check string
		level       Level
	}{
		{"same server_id", func(l, p *Server) { p.Vars["server_id"] = "1"; l.Replicas[0].SourceServerID = 1 }, "pair", "server_id", Fail},
		{"same domain", func(l, p *Server) { p.Vars["gtid_domain_id"] = "1" }, "pair", "gtid_domain_id", Fail},
		{"binlog off", func(l, p *Server) { p.Vars["log_bin"] = "OFF" }, "peer", "log_bin", Fail},
		{"log_slave_updates off", func(l, p *Server) { l.Vars["log_slave_updates"] = "OFF" }, "local", "log_slave_updates", Fail},
		{"mixed", func(l, p *Server) { l.Vars["binlog_format"] = "MIXED" }, "local", "binlog_format", Fail},
		{"read_only off at start", func(l, p *Server) { l.Vars["read_only"] = "OFF" }, "local", "read_only_at_start", Fail},
		{"read_only set since start", func(l, p *Server) { p.ReadOnlyOrigin = "SQL" }, "peer", "read_only_at_start", Skip},
		{"options say read-only", func(l, p *Server) { l.StartOptions = []string{"--read-only=ON"}; l.ReadOnlyOrigin = "SQL" }, "local", "read_only_at_start", OK},
		{"options lack read-only", func(l, p *Server) { l.StartOptions = []string{"--log-bin"} }, "local", "read_only_at_start", Fail},
		{"sync_binlog", func(l, p *Server) { p.Vars["sync_binlog"] = "0" }, "peer", "sync_binlog", Warn},
		{"flush", func(l, p *Server) { p.Vars["innodb_flush_log_at_trx_commit"] = "2" }, "peer", "innodb_flush_log_at_trx_commit", Warn},
		{"offsets", func(l, p *Server) { p.Vars["auto_increment_offset"] = "3" }, "pair", "auto_increment", Fail},
		{"increments", func(l, p *Server) { p.Vars["auto_increment_increment"] = "1" }, "pair", "auto_increment", Fail},
		{"semi-sync: a read-only node waits for acknowledgements", func(l, p *Server) { p.Vars["rpl_semi_sync_master_enabled"] = "ON" }, "peer", "semi_sync", Warn},
		{"semi-sync: replica side on one node only", func(l, p *Server) { p.Vars["rpl_semi_sync_slave_enabled"] = "ON" }, "pair", "semi_sync", Warn},
		{"replication stopped", func(l, p *Server) { p.Replicas[0].SQLRunning = false }, "peer", "replication", Fail},
		{"replication connecting", func(l, p *Server) { p.Replicas[0].IORunning = probe.IOConnecting }, "peer", "replication", Warn},
		{"no replication", func(l, p *Server) { l.Replicas = nil }, "local", "replication", Fail},
		{"not gtid", func(l, p *Server) { l.Replicas[0].UsingGTID = "No" }, "local", "replication", Fail},
		{"grants", func(l, p *Server) { p.Grants = []string{"GRANT PROCESS ON *.* TO `v`@`%`"} }, "peer", "grants", Fail},
		{"grants beyond need", func(l, p *Server) { l.Grants = []string{"GRANT ALL PRIVILEGES ON *.* TO `vipguard`@`%`"} }, "local", "grants", Warn},
		{"root, when no account is configured", func(l, p *Server) {
			l.User, l.Grants = "root@localhost", []string{"GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED VIA unix_socket WITH GRANT OPTION"}
		}, "local", "grants", OK},
		{"clock", func(l, p *Server) { p.Clock = 5 * time.Second }, "pair", "clock", Warn},
		{"clock far", func(l, p *Server) { p.Clock = time.Minute }, "pair", "clock", Fail},
		{"clock within uncertainty", func(l, p *Server) { p.Clock, p.ClockUncertainty = 1500*time.Millisecond, time.Second }, "pair", "clock", OK},
	} {
		l, p := goodServer("local", 1), goodServer("peer", 2)
		c.mutate(l, p)
		rs := CheckServers(l, p, "")
		for _, r := range rs {
			want := OK
			if r.Node == c.node && r.Check == c.check {
				want = c.level
			}
			if r.Level != want {
				t.Errorf("%s: %s, want %s", c.name, r, want)
			}
		}
		if len(Find(rs, c.node, c.check)) != 1 {
			t.Errorf("%s: no single %s/%s line", c.name, c.node, c.check)
		}
	}
	// A server that cannot be read fails its connect line and nothing
	// else of it; the pair is not judged.
	l := goodServer("local", 1)
	rs = CheckServers(l, &Server{Node: "peer", Target: "peer", Err: errors.New("refused")}, "")
	if f := Find(rs, "peer", "connect"); len(f) != 1 || f[0].Level != Fail {
		t.Errorf("unreadable peer: %v", rs)
	}
	if len(Find(rs, "pair", "server_id")) != 0 {
		t.Error("pair judged with an unreadable peer")
	}
}

func TestCheckStateDir(t *testing.T) {
	for _, c := range []struct {
		fi   FileInfo
		want Level
	}{
		{FileInfo{Path: "/d", Mode: fs.ModeDir | 0o755}, OK},
		{FileInfo{Path: "/d", Mode: fs.ModeDir | 0o775}, Fail},
		{FileInfo{Path: "/d", Mode: fs.ModeDir | 0o755, UID: 1000}, Fail},
		{FileInfo{Path: "/d", Mode: fs.ModeDir | 0o755, UID: 42}, OK},
		{FileInfo{Path: "/d", Mode: 0o644}, Fail},
		{FileInfo{Path: "/d", Err: fs.ErrNotExist}, Warn},
	} {
		if r := CheckStateDir(c.fi, 42); r.Level != c.want {
			t.Errorf("%+v: %s, want %s", c.fi, r, c.want)
		}
	}
}

func rootOwned(path string) []PathOwner {
	return []PathOwner{{Path: "/", Mode: fs.ModeDir | 0o755}, {Path: path, Mode: 0o755}}
}

// TestCheckKeepalived: the example keepalived.conf passes every check, and
// each edit flips exactly its own line.
func TestCheckKeepalived(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "keepalived", "keepalived.conf"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(conf string, owners func(string) []PathOwner) []Result {
		b, err := ParseKeepalived([]byte(conf))
		if err != nil {
			t.Fatal(err)
		}
		return CheckKeepalived(KeepalivedInput{Path: "k.conf", Conf: b, ConfigPath: "/etc/vipguard/vipguard.toml",
			CheckTimeout: 800 * time.Millisecond, Owners: owners})
	}
	rs := run(string(example), rootOwned)
	if len(rs) != 10 {
		t.Errorf("example: %d results, want 10: %v", len(rs), rs)
	}
	for _, r := range rs {
		if r.Level != OK {
			t.Errorf("example: %s", r)
		}
	}
	for _, c := range []struct {
		name, old, new string
		owners         func(string) []PathOwner
		check          string
		level          Level
	}{
		{"no script security", "    enable_script_security\n", "", nil, "keepalived.script_security", Fail},
		{"timeout too short", "    timeout 1\n", "    timeout 0.5\n", nil, "keepalived.timeout", Fail},
		{"no timeout", "    timeout 1\n", "", nil, "keepalived.timeout", Warn},
		{"weight", "    weight 0\n", "    weight -20\n", nil, "keepalived.weight", Fail},
		{"track weight", "        chk_mysql\n", "        chk_mysql weight 10\n", nil, "keepalived.weight", Fail},
		{"init_fail", "    init_fail\n", "", nil, "keepalived.init_fail", Warn},
		{"preempt", "    nopreempt\n", "", nil, "keepalived.nopreempt", Warn},
		{"state master", "    state BACKUP\n", "    state MASTER\n", nil, "keepalived.nopreempt", Warn},
		{"other config", `mysqlcheck -c /etc/vipguard/vipguard.toml"`, `mysqlcheck -c /etc/other.toml"`, nil, "keepalived.vrrp_script", Fail},
		{"notify config", `notify -c /etc/vipguard/vipguard.toml"`, `notify"`, nil, "keepalived.notify", OK},
		{"no notify", `    notify "/usr/libexec/vipguard/notify -c /etc/vipguard/vipguard.toml"`, "", nil, "keepalived.notify", Fail},
		{"writable dir", "", "", func(p string) []PathOwner {
			return []PathOwner{{Path: "/", Mode: fs.ModeDir | 0o755}, {Path: "/usr", Mode: fs.ModeDir | 0o775}, {Path: p, Mode: 0o755}}
		}, "keepalived.script_path", Fail},
	} {
		conf := strings.Replace(string(example), c.old, c.new, 1)
		if c.old != "" && conf == string(example) {
			t.Fatalf("%s: %q not in the example", c.name, c.old)
		}
		owners := c.owners
		if owners == nil {
			owners = rootOwned
		}
		for _, r := range run(conf, owners) {
			want := OK
			if r.Check == c.check {
				want = c.level
			}
			if r.Level != want {
				t.Errorf("%s: %s, want %s", c.name, r, want)
			}
		}
	}
	if _, err := ParseKeepalived([]byte("global_defs {\n")); err == nil {
		t.Error("unclosed block parsed")
	}
	if rs := CheckKeepalived(KeepalivedInput{Path: "/none", Err: fs.ErrNotExist}); len(rs) != 1 || rs[0].Level != Skip {
		t.Errorf("missing file: %v", rs)
	}
}

// TestCheckHAProxy: the example haproxy.cfg follows agentcheck on every
// server; each edit flips its server's line.
func TestCheckHAProxy(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "haproxy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(cfg string) []Result {
		return CheckHAProxy(HAProxyInput{Path: "h.cfg", Data: []byte(cfg), AgentPort: "9201"})
	}
	rs := run(string(example))
	if len(rs) != 4 {
		t.Errorf("example: %d results, want 4 servers: %v", len(rs), rs)
	}
	for _, r := range rs {
		if r.Level != OK {
			t.Errorf("example: %s", r)
		}
	}
	writerDB1 := `server db1 192.0.2.11:3306 check inter 1s fall 2 rise 1 agent-check agent-port 9201 agent-inter 200ms agent-send "writer\n" on-marked-down shutdown-sessions`
	if !strings.Contains(string(example), writerDB1) {
		t.Fatal("example changed: update the test")
	}
	for _, c := range []struct {
		name, new string
		level     Level
		want      string
	}{
		{"port", strings.Replace(writerDB1, "agent-port 9201", "agent-port 9999", 1), Fail, "not agentcheck's 9201"},
		{"no send", strings.Replace(writerDB1, ` agent-send "writer\n"`, "", 1), Fail, "no role"},
		{"bad word", strings.Replace(writerDB1, `"writer\n"`, `"primary-ish\n"`, 1), Fail, "unknown role"},
		{"sessions", strings.Replace(writerDB1, " on-marked-down shutdown-sessions", "", 1), Warn, "keeps its sessions"},
	} {
		rs := run(strings.Replace(string(example), writerDB1, c.new, 1))
		bad := 0
		for _, r := range rs {
			if r.Level != OK {
				bad++
				if r.Level != c.level || !strings.Contains(r.Detail, c.want) {
					t.Errorf("%s: %s", c.name, r)
				}
			}
		}
		if bad != 1 {
			t.Errorf("%s: %d lines not OK, want 1: %v", c.name, bad, rs)
		}
	}
	if rs := run("backend b\n    server a 192.0.2.11:3306 check\n"); len(rs) != 1 || rs[0].Level != Warn {
		t.Errorf("no agent-check: %v", rs)
	}
}

func TestCheckSemiSync(t *testing.T) {
	srv := func(node string, vars ...string) *Server {
		s := &Server{Node: node, Vars: map[string]string{}}
		for i := 0; i+1 < len(vars); i += 2 {
			s.Vars[vars[i]] = vars[i+1]
		}
		return s
	}
	cases := []struct {
		name       string
		a, b       *Server
		level      Level
		node, text string
	}{
		{"not used", srv("local", "read_only", "OFF"), srv("peer", "read_only", "ON"), OK, "pair", "not used"},
		{"by role", srv("local", "read_only", "OFF", "rpl_semi_sync_master_enabled", "ON", "rpl_semi_sync_slave_enabled", "ON"),
			srv("peer", "read_only", "ON", "rpl_semi_sync_master_enabled", "OFF", "rpl_semi_sync_slave_enabled", "ON"), OK, "pair", "source side by role (local ON, peer OFF)"},
		{"mysql names", srv("local", "read_only", "OFF", "rpl_semi_sync_source_enabled", "ON", "rpl_semi_sync_replica_enabled", "ON"),
			srv("peer", "read_only", "ON", "rpl_semi_sync_replica_enabled", "ON"), OK, "pair", "by role"},
		{"standby waits", srv("local", "read_only", "OFF", "rpl_semi_sync_slave_enabled", "ON"),
			srv("peer", "read_only", "ON", "rpl_semi_sync_master_enabled", "ON", "rpl_semi_sync_slave_enabled", "ON"), Warn, "peer", "read-only but the semi-sync source side is on"},
		{"nobody acknowledges the writer", srv("local", "read_only", "OFF", "rpl_semi_sync_master_enabled", "ON"),
			srv("peer", "read_only", "ON"), Warn, "local", "never sends"},
		{"replica side differs", srv("local", "rpl_semi_sync_slave_enabled", "ON"), srv("peer"), Warn, "pair", "replica side: local ON, peer OFF"},
	}
	for _, tc := range cases {
		r := checkSemiSync(tc.a, tc.b)
		if r.Level != tc.level || r.Node != tc.node || !strings.Contains(r.Detail, tc.text) {
			t.Errorf("%s: %+v, want %v %s %q", tc.name, r, tc.level, tc.node, tc.text)
		}
	}
}
