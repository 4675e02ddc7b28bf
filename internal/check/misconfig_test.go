package check

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// Each row produces its error for real (a probe against a real path or a
// real mariadbd), then checks how it is classified and worded: a setup
// mistake is Unknown (unfit) and names the key and the fix; a stopped
// server is Critical and reads as one.
func TestClassifyRealErrors(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 7, ReadOnly: true})
	mustExec(t, s, "CREATE USER 'vgbare'@'localhost' IDENTIFIED BY 'right'")
	dir := t.TempDir()

	regular := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// A socket file nothing listens on: what a killed mysqld leaves.
	deadSock := filepath.Join(dir, "dead.sock")
	l, err := net.Listen("unix", deadSock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	nowhere := func(path string) socketFacts { // the path as is; no server listens anywhere
		f := inspectSocket(path)
		f.Elsewhere = nil
		return f
	}

	for _, tc := range []struct {
		name    string
		mysql   func(m *config.MySQL)
		extra   string
		facts   func(string) socketFacts
		misconf bool
		want    []string
	}{
		{"socket path is a regular file", func(m *config.MySQL) { m.Socket = regular }, "", inspectSocket,
			true, []string{regular + `" is a regular file, not a socket`, "[mysql] socket", "socket= path of mysqld's my.cnf"}},
		{"socket path is a directory", func(m *config.MySQL) { m.Socket = dir }, "", inspectSocket,
			true, []string{`is a directory, not a socket`, "[mysql] socket"}},
		{"no socket at the path, mysqld listens beside it", func(m *config.MySQL) { m.Socket = s.Socket + ".typo" }, "", inspectSocket,
			true, []string{"no socket at", "but a MySQL server listens at " + `"` + s.Socket + `"`, "[mysql] socket"}},
		{"no socket at the path, no server anywhere", func(m *config.MySQL) { m.Socket = s.Socket + ".typo" }, "", nowhere,
			false, []string{"no socket at", "mysqld is not running", "or [mysql] socket names the wrong path"}},
		{"socket file nothing listens on", func(m *config.MySQL) { m.Socket = deadSock }, "", inspectSocket,
			false, []string{`mysqld is not running (nothing listens on "` + deadSock + `")`}},
		{"wrong password", func(m *config.MySQL) { m.User, m.Password = "vgbare", "wrong" }, "", inspectSocket,
			true, []string{"refused the login", "[mysql] user, password or defaults_file", `"Required grants"`, "Error 1045"}},
		{"account without grants", func(m *config.MySQL) { m.User, m.Password = "vgbare", "right" }, "", inspectSocket,
			true, []string{"lacks a privilege", "[mysql] user", `"Required grants"`, "Error 1227"}},
		{"heartbeat table that does not exist", nil, "[heartbeat]\ntable = \"nope.heartbeat\"\nserver_id = 99\n", inspectSocket,
			true, []string{"does not exist", "[heartbeat] table"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cfgFor(t, s, tc.extra)
			if tc.mysql != nil {
				tc.mysql(&cfg.MySQL)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := Snapshot(ctx, cfg)
			if err == nil {
				t.Fatal("the probe succeeded")
			}
			if mc := classify(err, tc.facts); mc != nil {
				err = mc
			}
			v := errorVerdict(err, time.Second)
			t.Log(v.Reason)
			wantStatus := Critical
			if tc.misconf {
				wantStatus = Unknown
			}
			if v.Misconfigured != tc.misconf || v.Status != wantStatus || v.Fit {
				t.Errorf("misconfigured=%v status=%s fit=%v, want misconfigured=%v status=%s unfit (%s)",
					v.Misconfigured, v.Status, v.Fit, tc.misconf, wantStatus, v.Reason)
			}
			for _, w := range tc.want {
				if !strings.Contains(v.Reason, w) {
					t.Errorf("reason %q lacks %q", v.Reason, w)
				}
			}
		})
	}
}

// Run itself classifies: a typo in the socket path on a node whose mysqld
// runs reads as a configuration problem, not as a dead server.
func TestRunSaysMisconfigured(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 8, ReadOnly: true})
	cfg := cfgFor(t, s, "")
	cfg.MySQL.Socket = filepath.Join(filepath.Dir(s.Socket), "mysql.sock")
	v := Run(context.Background(), cfg)
	if !v.Misconfigured || v.Status != Unknown || v.Fit || !strings.Contains(v.Reason, s.Socket) {
		t.Fatalf("got misconfigured=%v %s fit=%v %q", v.Misconfigured, v.Status, v.Fit, v.Reason)
	}
}

// Errors that need privileges root has cannot be produced for real here:
// the same error value the kernel returns, on the path it names.
func TestClassifyPermissionDenied(t *testing.T) {
	sock := &net.UnixAddr{Name: "/run/mysqld/mysqld.sock", Net: "unix"}
	mc := classify(&net.OpError{Op: "dial", Net: "unix", Addr: sock, Err: os.NewSyscallError("connect", syscall.EACCES)}, inspectSocket)
	if mc == nil || mc.Key != keySocket || !strings.Contains(mc.Problem, "no permission") {
		t.Fatalf("got %+v", mc)
	}
	if classify(errors.New("driver: bad connection"), inspectSocket) != nil {
		t.Fatal("an unknown error classified as a setup mistake")
	}
}

func TestParseListeningMySQLSockets(t *testing.T) {
	const table = `Num       RefCount Protocol Flags    Type St Inode Path
0000000037f7ecc5: 00000002 00000000 00010000 0001 01 21840 /run/mysqld/mysqld.sock
0000000037f7ecc6: 00000002 00000000 00010000 0001 01 21841 /run/systemd/private
0000000037f7ecc7: 00000003 00000000 00000000 0001 03 21842 /run/mysqld/mysqld.sock
0000000037f7ecc8: 00000002 00000000 00010000 0001 01 21843 @mysql.sock
0000000037f7ecc9: 00000002 00000000 00010000 0001 01 21844 /var/lib/mysql/mysql.sock
0000000037f7ecca: 00000002 00000000 00010000 0001 01 21845 /tmp/mariadb.sock
0000000037f7eccb: 00000002 00000000 00010000 0001 01 21846 /tmp/typo.sock
`
	got := parseListeningMySQLSockets([]byte(table), "/tmp/typo.sock")
	want := []string{"/run/mysqld/mysqld.sock", "/var/lib/mysql/mysql.sock", "/tmp/mariadb.sock"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
