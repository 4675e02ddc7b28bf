package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func examples(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The lab runs the example files with only addresses, interface names and
// paths changed: check exactly that, on the real files.
func TestRenderKeepalived(t *testing.T) {
	ex := examples(t, "keepalived/keepalived.conf")
	p := KeepalivedParams{Self: "db2", Peer: "db1", Interface: "vg0001-db2",
		Mysqlcheck: "/run/vglab/vg0001/bin/mysqlcheck", Config: "/run/vglab/vg0001/db2/vipguard.toml",
		Notify: "/run/vglab/vg0001/db2/notify", TrackFile: "/run/vglab/vg0001/db2/state/mysql.track"}
	got, err := RenderKeepalived(ex, p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	for _, want := range []string{
		"unicast_src_ip 192.0.2.12\n", "unicast_peer {\n        192.0.2.11\n",
		"interface vg0001-db2\n", "192.0.2.100/24 dev vg0001-db2\n",
		`script "/run/vglab/vg0001/bin/mysqlcheck -c /run/vglab/vg0001/db2/vipguard.toml"`,
		"\n    notify \"/run/vglab/vg0001/db2/notify -c /run/vglab/vg0001/db2/vipguard.toml\"\n",
		`file "/run/vglab/vg0001/db2/state/mysql.track"`,
		"enable_script_security", "script_user root", "init_fail", "nopreempt", "weight 0", "advert_int 1", "interval 1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("rendered keepalived.conf lacks %q", want)
		}
	}
	for _, gone := range []string{exampleMysqlcheck, exampleNotify, "/etc/vipguard", "/var/lib/vipguard", "eth0", "192.0.2.11\n    unicast_peer"} {
		if strings.Contains(s, gone) {
			t.Errorf("rendered keepalived.conf still contains %q", gone)
		}
	}
	// Nothing else changed: same line count, and every line either equal or
	// one of the substituted ones.
	el, gl := strings.Split(string(ex), "\n"), strings.Split(s, "\n")
	if len(el) != len(gl) {
		t.Fatalf("line count changed: %d → %d", len(el), len(gl))
	}
	changed := 0
	for i := range el {
		if el[i] != gl[i] {
			changed++
		}
	}
	if changed != 7 { // src, peer, interface, dev, script, notify, track file
		t.Errorf("%d lines changed, want 7", changed)
	}
	// The fast-VRRP variant renders the same way.
	fast, err := RenderKeepalived(examples(t, "keepalived/keepalived-fast.conf"), p)
	if err != nil || !strings.Contains(string(fast), `file "/run/vglab/vg0001/db2/state/mysql.track"`) || !strings.Contains(string(fast), "vrrp_version 3") {
		t.Errorf("fast variant: %v\n%s", err, fast)
	}

	// The stand-in replaces the whole notify line.
	p.NotifyLine = `notify "/run/vglab/vg0001/bin/naive-notify a b c"`
	got, err = RenderKeepalived(ex, p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "\n    "+p.NotifyLine+"\n") || strings.Contains(string(got), exampleNotify) {
		t.Error("stand-in notify line not put in place of the example's")
	}

	// An example that lost a substitution target is an error, not a
	// silently different lab.
	if _, err := RenderKeepalived([]byte(strings.ReplaceAll(string(ex), exampleMysqlcheck, "/bin/true")), p); err == nil {
		t.Error("rendering an example without mysqlcheck succeeded")
	}
}

func TestRenderHAProxy(t *testing.T) {
	ex := examples(t, "haproxy/haproxy.cfg")
	for _, replica := range []bool{false, true} {
		got, err := RenderHAProxy(ex, "/run/vglab/vg0001/proxy/admin.sock", replica)
		if err != nil {
			t.Fatal(err)
		}
		s := string(got)
		if !strings.Contains(s, "stats socket /run/vglab/vg0001/proxy/admin.sock ") || strings.Contains(s, exampleStatsSock) {
			t.Error("stats socket not moved")
		}
		// Nothing else changed but, with the replica, its server line:
		// uncommented, in the reader backend only.
		el, gl := strings.Split(string(ex), "\n"), strings.Split(s, "\n")
		if len(el) != len(gl) {
			t.Fatalf("replica %v: line count changed: %d → %d", replica, len(el), len(gl))
		}
		changed := 0
		for i := range el {
			if el[i] != gl[i] {
				changed++
			}
		}
		want, reader := 1, ""
		if replica {
			want = 2
			reader = s[strings.Index(s, "backend mysql_reader"):]
		}
		if changed != want {
			t.Errorf("replica %v: %d lines changed, want %d", replica, changed, want)
		}
		line := `    server db3 192.0.2.13:3306 weight 100 check inter 1s fall 2 rise 2 agent-check agent-port 9201 agent-inter 1s agent-send "reader\n"` + "\n"
		if n := strings.Count(s, line); n != strings.Count(reader, line) || (n == 1) != replica {
			t.Errorf("replica %v: the replica's reader server line is there %d times (%d in the reader backend)", replica, n, strings.Count(reader, line))
		}
		// HAProxy itself accepts the file, where it is installed.
		if bin, err := lookPath("haproxy"); err == nil {
			f := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(f, got, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, "-c", "-f", f).CombinedOutput(); err != nil {
				t.Errorf("haproxy -c rejects the example (replica %v): %v\n%s", replica, err, out)
			}
		}
	}
	// The example without the replica's line is an error, not a lab
	// silently without it.
	if _, err := RenderHAProxy([]byte(strings.ReplaceAll(string(ex), exampleReplicaServer, "")), "/x", true); err == nil {
		t.Error("rendering an example without the replica's server line succeeded")
	}
}

func TestNamespacePattern(t *testing.T) {
	for name, want := range map[string]bool{
		"vg0042-db1": true, "vg0042-sw": true, "vg9999-client": true, "vg0042-db3": true,
		"vg42-db1": false, "vg0042-db4": false, "xvg0042-db1": false, "vg0042-db1x": false,
	} {
		if got := nsPattern.MatchString(name); got != want {
			t.Errorf("nsPattern(%q) = %v, want %v", name, got, want)
		}
	}
}
