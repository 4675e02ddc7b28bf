package config

import (
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func write(t *testing.T, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask must not soften the test
		t.Fatal(err)
	}
	return p
}

func TestExampleIsComplete(t *testing.T) {
	// examples/vipguard.toml is the commented reference copy: it must load,
	// and must mention every key the struct knows.
	p := filepath.Join("..", "..", "examples", "vipguard.toml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data); err != nil {
		t.Fatalf("example does not parse: %v", err)
	}
	for _, key := range tomlKeys(Config{}) {
		if !strings.Contains(string(data), key+" =") {
			t.Errorf("examples/vipguard.toml does not document %q", key)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/var/lib/vipguard" || c.MySQL.Socket != "/run/mysqld/mysqld.sock" ||
		c.Check.Timeout.Duration != 800*time.Millisecond || c.Check.MaxLag.Duration != 300*time.Second ||
		!*c.Check.RequireReplication || !*c.Heartbeat.UTC {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestZeroConfigUsesInvokingUser(t *testing.T) {
	// No file at the default path: built-in defaults, current OS user.
	if _, err := os.Stat(DefaultPath); err == nil {
		t.Skip(DefaultPath + " exists on this machine")
	}
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := user.Current()
	if c.MySQL.User != u.Username || c.MySQL.Host != "" || c.Path() != "" {
		t.Fatalf("zero config: %+v", c.MySQL)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"unknown top key", "state_dir = \"/x\"\nstatedir = \"/y\"\n", `line 2: unknown key "statedir"`},
		{"unknown nested key", "[mysql]\nsocket = \"/s\"\n\n[check]\ntimout = \"1s\"\n", `line 5: unknown key "check.timout"`},
		{"unknown table", "[mysqld]\nport = 1\n", `unknown key "mysqld`},
		{"bad type", "[mysql]\nport = \"3306\"\n", "port"},
		{"bad duration", "[check]\ntimeout = \"soon\"\n", `invalid duration "soon"`},
		{"duration as number", "[check]\ntimeout = 5\n", "check.timeout"},
		{"syntax", "[mysql\nport = 1\n", "line 2"},
		{"port range", "[mysql]\nport = 70000\n", "mysql.port 70000 is not a TCP port"},
		{"negative timeout", "[check]\ntimeout = \"-1s\"\n", "check.timeout must be positive"},
		{"huge timeout", "[check]\ntimeout = \"5m\"\n", "longer than any keepalived interval"},
		{"relative state dir", "state_dir = \"var/x\"\n", "must be an absolute path"},
		{"bad vip", "[vip]\naddress = \"192.0.2.300\"\n", `vip.address "192.0.2.300"`},
		{"bad heartbeat table", "[heartbeat]\ntable = \"hb.x; DROP TABLE y\"\n", "heartbeat.table"},
		{"witness without port", "[check]\nwitnesses = [\"192.0.2.1\"]\n", `check.witnesses: "192.0.2.1": want ip:port`},
		{"witness port name", "[check]\nwitnesses = [\"192.0.2.1:ssh\"]\n", `port "ssh" is not a number`},
		{"witness name", "[check]\nwitnesses = [\"gw.example:22\"]\n", "not an IP address (no names"},
		{"witness no host", "[check]\nwitnesses = [\":22\"]\n", "not an IP address"},
		{"witness loopback", "[check]\nwitnesses = [\"127.0.0.1:9\", \"[::1]:9\"]\n", "always reaches it"},
		{"witness is the vip", "[vip]\naddress = \"192.0.2.100\"\n[check]\nwitnesses = [\"192.0.2.100:9\"]\n", "is the VIP"},
		{"too many witnesses", "[check]\nwitnesses = [\"192.0.2.1:1\",\"192.0.2.1:2\",\"192.0.2.1:3\",\"192.0.2.1:4\",\"192.0.2.1:5\",\"192.0.2.1:6\",\"192.0.2.1:7\",\"192.0.2.1:8\",\"192.0.2.1:9\"]\n", "at most 8"},
		{"witness timeout over check timeout", "[check]\nwitness_timeout = \"1s\"\n", `check.witness_timeout "1s" must be below check.timeout "800ms"`},
		{"two errors reported", "[mysql]\nport = 0\n[peer]\nport = -1\n", "peer.port"},
		{"duration rounding to 0", "[check]\nmax_lag = \"0.0000000001s\"\n", `check.max_lag: duration "0.0000000001s" rounds to 0`},
		{"duration as float", "[check]\nmax_lag = 1e-300\n", "check.max_lag"},
		{"explicit 0 is no default", "[agent]\nmax_lag = \"0s\"\n", "agent.max_lag is 0: give a positive duration"},
		{"explicit 0 timeout", "[notify]\nfence_timeout = \"0\"\n", "notify.fence_timeout is 0"},
		{"allow host bits", "[agent]\nallow = [\"192.0.2.1/24\"]\n", `agent.allow: "192.0.2.1/24": has bits set past the prefix length; did you mean "192.0.2.0/24"?`},
		{"allow name", "[agent]\nallow = [\"haproxy1\"]\n", `agent.allow: "haproxy1": not an IP address or a CIDR (no names)`},
		{"allow zone", "[agent]\nallow = [\"fe80::1%eth0\"]\n", "has a zone"},
		{"allow empty entry", "[agent]\nallow = [\"\"]\n", "want a CIDR"},
		{"allow spaces", "[agent]\nallow = [\" 192.0.2.1\"]\n", "without spaces"},
		{"allow mapped", "[agent]\nallow = [\"::ffff:192.0.2.1\"]\n", "write the IPv4 form"},
		{"allow bad prefix", "[agent]\nallow = [\"192.0.2.0/33\"]\n", "not a CIDR"},
		{"allow not a list", "[agent]\nallow = \"192.0.2.0/24\"\n", "allow"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestAllowList(t *testing.T) {
	c, err := Parse([]byte("[agent]\nallow = [\"192.0.2.0/24\", \"198.51.100.7\", \"2001:db8::/32\", \"::1\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.Agent.AllowList() {
		got = append(got, p.String())
	}
	if want := "192.0.2.0/24 198.51.100.7/32 2001:db8::/32 ::1/128"; strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	if d := Default(); d.Agent.AllowList() != nil {
		t.Fatal("default must allow everyone")
	}
}

func TestMaxLagZeroDisables(t *testing.T) {
	c, err := Parse([]byte("[check]\nmax_lag = \"0s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Check.MaxLag.Duration != 0 {
		t.Fatalf("max_lag = %s, want 0 (disabled)", c.Check.MaxLag)
	}
}

func TestLoadFiles(t *testing.T) {
	t.Run("explicit missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
		if err == nil || !strings.Contains(err.Error(), "cannot read config") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("unreadable file", func(t *testing.T) {
		p := write(t, "c.toml", "", 0o600)
		// Root reads any file; a directory is unreadable as a file for all.
		if os.Geteuid() == 0 {
			os.Remove(p)
			os.Mkdir(p, 0o700)
		} else {
			os.Chmod(p, 0)
		}
		if _, err := Load(p); err == nil || (!strings.Contains(err.Error(), "cannot read config") && !strings.Contains(err.Error(), "is a directory")) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("error names the file", func(t *testing.T) {
		p := write(t, "c.toml", "bogus = 1\n", 0o600)
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Fatalf("got %v", err)
		}
	})
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o600, true}, {0o640, true}, {0o400, true}, {0o644, false}, {0o660, false}, {0o604, false}} {
		t.Run("password with mode "+tc.mode.String(), func(t *testing.T) {
			p := write(t, "c.toml", "[mysql]\npassword = \"s3cret\"\n", tc.mode)
			_, err := Load(p)
			if tc.ok != (err == nil) {
				t.Fatalf("mode %04o: got %v", tc.mode, err)
			}
			if err != nil && (!strings.Contains(err.Error(), "chmod 0600") && !strings.Contains(err.Error(), "chmod go-w") || strings.Contains(err.Error(), "s3cret")) {
				t.Fatalf("message must say how to fix and never show the secret: %v", err)
			}
		})
	}
	t.Run("peer password is a secret too", func(t *testing.T) {
		p := write(t, "c.toml", "[peer]\nhost = \"192.0.2.12\"\npassword = \"s3cret\"\n", 0o644)
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "holds a password") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("world-readable without password is fine", func(t *testing.T) {
		p := write(t, "c.toml", "[mysql]\nuser = \"monitor\"\n", 0o644)
		if _, err := Load(p); err != nil {
			t.Fatal(err)
		}
	})
}

// Every file that steers the tools follows sshd's StrictModes rule, with
// or without a password in it, and is read as a regular file through a
// size limit, never blocking.
func TestLoadStrictModes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	const nobody = 65534
	plain := "[mysql]\nuser = \"monitor\"\n"
	foreign := write(t, "c.toml", plain, 0o644)
	os.Chown(foreign, nobody, nobody)
	groupW := write(t, "c.toml", plain, 0o664)
	otherW := write(t, "c.toml", plain, 0o646)
	link := filepath.Join(t.TempDir(), "link.toml")
	os.Symlink(write(t, "c.toml", plain, 0o644), link)
	fifo := filepath.Join(t.TempDir(), "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := write(t, "big.toml", "", 0o600)
	os.Truncate(big, 100<<20)
	optForeign := write(t, "my.cnf", "[client]\nuser = x\n", 0o644)
	os.Chown(optForeign, nobody, nobody)
	optGroupW := write(t, "my.cnf", "[client]\nuser = x\n", 0o660)
	incDir := t.TempDir()
	incGroupW := filepath.Join(incDir, "50-x.cnf")
	os.WriteFile(incGroupW, []byte("[client]\nport = 3307\n"), 0o644)
	os.Chmod(incGroupW, 0o664)
	optInclude := write(t, "my.cnf", "[client]\n!includedir "+incDir+"\n", 0o600)
	withOpt := func(opt string) string {
		return write(t, "c.toml", "[mysql]\ndefaults_file = \""+opt+"\"\n", 0o600)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"foreign owner", foreign, `config "` + foreign + `" is owned by uid 65534, not by the user running this (uid 0); run: chown 0 "` + foreign + `"`},
		{"group writable", groupW, `config "` + groupW + `" is writable by its group or others (mode 0664); run: chmod go-w "` + groupW + `"`},
		{"others writable", otherW, "(mode 0646); run: chmod go-w"},
		{"symlink", link, "is a symbolic link, which is not followed; name the file it points to"},
		{"fifo", fifo, "is a FIFO, not a regular file"},
		{"device", "/dev/zero", "is a character device, not a regular file"},
		{"100 MB", big, "is larger than 1 MiB"},
		{"foreign option file", withOpt(optForeign), `option file "` + optForeign + `" is owned by uid 65534`},
		{"group-writable option file", withOpt(optGroupW), `option file "` + optGroupW + `" is writable by its group`},
		{"group-writable included file", withOpt(optInclude), `option file "` + incGroupW + `" is writable by its group`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := Load(tc.path); done <- err }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want an error containing %q", err, tc.want)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Load blocked")
			}
		})
	}
	t.Run("root-owned 0644 without password is fine", func(t *testing.T) {
		if _, err := Load(write(t, "c.toml", plain, 0o644)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDefaultsFile(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "conf.d")
	os.Mkdir(inc, 0o755)
	os.WriteFile(filepath.Join(inc, "50-port.cnf"), []byte("[client]\nport = 3307\n"), 0o644)
	os.WriteFile(filepath.Join(inc, "README"), []byte("[client]\nport = 1\n"), 0o644)
	opt := write(t, "debian.cnf", `# Automatically generated for Debian scripts. DO NOT TOUCH!
[client]
host     = localhost
user     = debian-sys-maint
password = "p#ss w\"rd"
socket   = /var/run/mysqld/mysqld.sock
[mysql_upgrade]
user     = other
!includedir `+inc+"\n", 0o600)
	p := write(t, "c.toml", "[mysql]\ndefaults_file = \""+opt+"\"\n", 0o644)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	m := c.MySQL
	if m.User != "debian-sys-maint" || m.Password != `p#ss w"rd` || m.Socket != "/var/run/mysqld/mysqld.sock" || m.Host != "" || m.Port != 3307 {
		t.Fatalf("option file not applied: %+v", m)
	}

	t.Run("toml wins", func(t *testing.T) {
		p := write(t, "c.toml", "[mysql]\nuser = \"mon\"\nsocket = \"/s\"\nport = 3310\ndefaults_file = \""+opt+"\"\n", 0o644)
		c, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if c.MySQL.User != "mon" || c.MySQL.Socket != "/s" || c.MySQL.Port != 3310 || c.MySQL.Password != `p#ss w"rd` {
			t.Fatalf("%+v", c.MySQL)
		}
	})
	t.Run("world-readable option file with password refused", func(t *testing.T) {
		os.Chmod(opt, 0o644)
		defer os.Chmod(opt, 0o600)
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "holds a password") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("missing option file", func(t *testing.T) {
		p := write(t, "c.toml", "[mysql]\ndefaults_file = \"/nonexistent/my.cnf\"\n", 0o644)
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "cannot read option file") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("include loop is bounded", func(t *testing.T) {
		loop := filepath.Join(t.TempDir(), "loop.cnf")
		os.WriteFile(loop, []byte("!include "+loop+"\n"), 0o600)
		if _, err := ReadOptionFile(loop); err == nil || !strings.Contains(err.Error(), "nested deeper") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestParseOptionFile(t *testing.T) {
	cases := []struct {
		name, in string
		want     OptionFile
		err      string
	}{
		{"plain", "[client]\nuser=a\npassword=b\n", OptionFile{User: "a", Password: "b"}, ""},
		{"other groups ignored", "[mysqld]\nuser=mysql\n[client]\nuser=a\n", OptionFile{User: "a"}, ""},
		{"later client group wins", "[client-mariadb]\nuser=b\n[client]\nuser=a\n", OptionFile{User: "a"}, ""},
		{"underscores and case", "[CLIENT]\nUser = a\n", OptionFile{User: "a"}, ""},
		{"single quotes and escapes", "[client]\npassword='a\\tb'\n", OptionFile{Password: "a\tb"}, ""},
		{"trailing comment", "[client]\nuser = bob # the user\n", OptionFile{User: "bob"}, ""},
		{"hash inside word", "[client]\npassword = ab#cd\n", OptionFile{Password: "ab#cd"}, ""},
		{"bare flag", "[client]\ncompress\nuser=a\n", OptionFile{User: "a"}, ""},
		{"bad port", "[client]\nport=abc\n", OptionFile{}, "port \"abc\""},
		{"unterminated", "[client]\npassword=\"abc\n", OptionFile{}, "unterminated"},
		{"bad header", "[client\n", OptionFile{}, "no closing ]"},
		{"unknown directive", "!includes x\n", OptionFile{}, "unknown directive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var o OptionFile
			err := ParseOptionFile([]byte(tc.in), &o, nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || o != tc.want {
				t.Fatalf("got %+v %v, want %+v", o, err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "state_dir = \"/x\"\n[mysql]\nport = 3306\n", "[check]\ntimeout = \"1s\"\n",
		"[[mysql]]\n", "a.b.c = 1", "[mysql]\nport = 99999999999999999999\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil {
			// Whatever parses must be valid and complete.
			if c.Check.Timeout.Duration <= 0 || c.MySQL.Port < 1 || c.StateDir == "" {
				t.Fatalf("accepted invalid config: %+v", c)
			}
		}
	})
}

func FuzzParseOptionFile(f *testing.F) {
	for _, s := range []string{"[client]\nuser=a\npassword=\"b\\\"c\"\n", "!include /x\n", "[client]\nport=3306 # p\n", "\xff\xfe[client]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var o OptionFile
		err := ParseOptionFile(data, &o, func(string, string) error { return nil })
		if err == nil && (o.Port < 0 || o.Port > 65535) {
			t.Fatalf("accepted port %d", o.Port)
		}
	})
}

// tomlKeys lists the leaf keys of a config struct by their toml tags.
func tomlKeys(v any) []string {
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("toml"), ",")[0]
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(Duration{}) {
				walk(ft)
				continue
			}
			out = append(out, tag)
		}
	}
	walk(reflect.TypeOf(v))
	return out
}
