package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/agent"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/nodestatus"
	"github.com/vipguard/vipguard/internal/ops"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/clitest"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
	"github.com/vipguard/vipguard/testsupport/nettest"
)

// The CLI contract is tested on the built binary, with mysqlcheck built
// beside it (where vipguard check finds it outside a package install).
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vgbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binPath = filepath.Join(dir, "vipguard")
	for _, b := range [][2]string{{binPath, "."}, {filepath.Join(dir, "mysqlcheck"), "../mysqlcheck"}} {
		if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b[1], err, out)
			os.RemoveAll(dir)
			os.Exit(2)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runBin(t *testing.T, args ...string) clitest.Result {
	t.Helper()
	return clitest.Run(t, context.Background(), "", binPath, args...)
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	sd := filepath.Join(dir, "state")
	if err := os.Mkdir(sd, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "vipguard.toml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf("state_dir = %q\n%s", sd, body)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{nil, 80, ""},
		{[]string{"frobnicate"}, 80, ""},
		{[]string{"help"}, 0, "Usage: vipguard"},
		{[]string{"--help"}, 0, "switchover"},
		{[]string{"version"}, 0, "(devel)"},
		{[]string{"--version"}, 0, "(devel)"},
		{[]string{"status", "--bogus"}, 80, ""},
		{[]string{"-c", "/nonexistent.toml", "status"}, 2, ""},
		{[]string{"-c", "/nonexistent.toml", "check"}, 2, ""},
		{[]string{"check", "--help"}, 0, "Usage: vipguard check"},
	} {
		r := runBin(t, c.args...)
		if r.Code != c.code || !strings.Contains(r.Stdout, c.out) {
			t.Errorf("%q: exit %d, want %d; stdout %q stderr %q", c.args, r.Code, c.code, r.Stdout, r.Stderr)
		}
		if c.code == 80 && !strings.HasPrefix(r.Stderr, "vipguard: error: ") {
			t.Errorf("%q: stderr %q", c.args, r.Stderr)
		}
	}
}

// A peer that cannot be reached is shown as such, never as healthy.
func TestStatusPeerUnreachable(t *testing.T) {
	// A socket nothing listens on: a stopped mysqld, whatever else runs on
	// this machine (a missing path would read as a typo when another
	// test's server listens meanwhile).
	dead := filepath.Join(t.TempDir(), "mysqld.sock")
	l, err := net.Listen("unix", dead)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	cfg := writeConfig(t, fmt.Sprintf("[mysql]\nsocket = %q\n[peer]\nhost = \"127.0.0.1\"\nagent = %q\n", dead, nettest.Refusing(t)))
	r := runBin(t, "-c", cfg, "status")
	if r.Code != exitWarning || !strings.Contains(r.Stdout, "UNREACHABLE, state unknown") || !strings.Contains(r.Stdout, "role:        unknown") {
		t.Errorf("exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = runBin(t, "-c", cfg, "status", "--json")
	var v ops.Pair
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil || v.Peer != nil || !strings.Contains(v.PeerError, "connection refused") {
		t.Errorf("json: %v %+v", err, v)
	}
	if r := runBin(t, "-c", cfg, "check"); r.Code != 1 || !strings.HasPrefix(r.Stderr, "mysqlcheck: unfit: ") {
		t.Errorf("check: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if r := runBin(t, "check", "-c", cfg, "--nagios"); r.Code != 2 || !strings.HasPrefix(r.Stdout, "VIPGUARD CRITICAL") {
		t.Errorf("check --nagios: exit %d, stdout %q", r.Code, r.Stdout)
	}
	if r := runBin(t, "-c", cfg, "maint", "on", "--reason", "test"); r.Code != 0 || !strings.Contains(r.Stdout, "maintenance: on") {
		t.Errorf("maint on: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	if r := runBin(t, "-c", cfg, "status"); !strings.Contains(r.Stdout, "  maintenance: on since ") {
		t.Errorf("status under maintenance:\n%s", r.Stdout)
	}
	if r := runBin(t, "-c", cfg, "switchover", "--dry-run"); r.Code != exitProblem || !strings.Contains(r.Stdout, "refused") {
		t.Errorf("switchover from a broken node: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := runBin(t, "maint", "off", "-c", cfg); r.Code != 0 || !strings.Contains(r.Stdout, "maintenance: off") {
		t.Errorf("maint off: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// The verdict is the output; it is not an error on top.
	if r := runBin(t, "-c", cfg, "doctor", "--keepalived-conf", "/nonexistent", "--haproxy-cfg", "/nonexistent"); r.Code != exitProblem || !strings.Contains(r.Stdout, "FAIL  local  connect") || r.Stderr != "" {
		t.Errorf("doctor: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = runBin(t, "-c", cfg, "doctor", "--json", "--keepalived-conf", "/nonexistent", "--haproxy-cfg", "/nonexistent")
	var d struct {
		Worst   string `json:"worst"`
		Results []struct{ Check, Node, Level string }
	}
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil || r.Code != exitProblem || d.Worst != "FAIL" || len(d.Results) < 5 {
		t.Errorf("doctor --json: %d %v %+v", r.Code, err, d)
	}
}

// serveAgent runs agentcheck for cfg until the test ends; its address.
func serveAgent(t *testing.T, cfgPath string) string {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	srv := agent.NewServer(cfg, slog.New(slog.DiscardHandler))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Poller.Run(ctx) }()
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done; <-served })
	return l.Addr().String()
}

// TestStatusPair: a writer promoted by notify here, a fenced standby there.
func TestStatusPair(t *testing.T) {
	a, b := mariadbtest.Pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	if err := a.Exec(ctx, "SET GLOBAL read_only=OFF"); err != nil {
		t.Fatal(err)
	}
	bcfg := writeConfig(t, fmt.Sprintf("[mysql]\nsocket = %q\nuser = \"root\"\n", b.Socket))
	acfg := writeConfig(t, fmt.Sprintf("[mysql]\nsocket = %q\nuser = \"root\"\n[peer]\nhost = %q\nport = %d\nagent = %q\n",
		a.Socket, b.Host, b.Port, serveAgent(t, bcfg)))
	now := time.Now().UTC()
	for _, c := range []struct {
		cfg string
		o   state.Outcome
	}{
		{acfg, state.Outcome{Event: "MASTER", Phase: state.PhaseDone, Role: state.RoleWriter, At: now}},
		{bcfg, state.Outcome{Event: "BACKUP", Phase: state.PhaseDone, Role: state.RoleStandby, At: now, FinalPosition: "gtid=1-1-1"}},
	} {
		cfg, err := config.Load(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := state.Dir(cfg.StateDir).WriteOutcome(c.o); err != nil {
			t.Fatal(err)
		}
	}
	var v ops.Pair
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := runBin(t, "-c", acfg, "status", "--json")
		if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
			t.Fatalf("%v: %s%s", err, r.Stdout, r.Stderr)
		}
		// No witness here: WARNING, still fit; the pair is sound. A loaded
		// machine may need a second poll.
		good := r.Code == 0 && v.Local.Role == nodestatus.RoleWriter && v.Peer != nil && v.Peer.Role == nodestatus.RoleFenced && len(v.Problems) == 0
		if good || time.Now().After(deadline) {
			if !good {
				t.Errorf("exit %d: local %+v, peer %+v, problems %v\n%s", r.Code, v.Local, v.Peer, v.Problems, r.Stderr)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if v.Peer == nil || v.Peer.Role != nodestatus.RoleFenced || !v.Peer.Streaming() {
		t.Fatalf("peer: %+v (%s)", v.Peer, v.PeerError)
	}
	wants := []string{"(this node, state of ", "role:        writer: read_only=OFF, promoted by notify", "  mysql:       mariadb", "read_only=false",
		"(peer, via ", "role:        fenced", "pair: ok"}
	var r clitest.Result
	for try := 0; try < 3; try++ {
		r = runBin(t, "-c", acfg, "status")
		missing := ""
		for _, want := range wants {
			if !strings.Contains(r.Stdout, want) {
				missing = want
			}
		}
		if missing == "" {
			break
		}
		if try == 2 {
			t.Errorf("text status lacks %q:\n%s", missing, r.Stdout)
		}
	}
	// Two writers: a problem, exit 4.
	if err := b.Exec(ctx, "SET GLOBAL read_only=OFF"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		r = runBin(t, "-c", acfg, "status")
		if r.Code == exitProblem || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.Code != exitProblem || !strings.Contains(r.Stdout, "pair: BOTH NODES ARE WRITABLE") {
		t.Errorf("two writers: exit %d\n%s", r.Code, r.Stdout)
	}
}

func TestWriteNodeSemiSync(t *testing.T) {
	var b strings.Builder
	writeNode(&b, &nodestatus.Status{Host: "db1", PollAge: -1,
		MySQL: &nodestatus.MySQL{SemiSync: &nodestatus.SemiSync{State: "semi-sync active, 1 acknowledging replica(s), 0 fall-back(s)",
			SourceEnabled: true, Acked: 7}},
		Notify: &nodestatus.Notify{Event: "MASTER", Phase: "done", Role: "writer", SemiSync: "kept"}}, "local")
	for _, want := range []string{"semi-sync:   semi-sync active, 1 acknowledging replica(s), 0 fall-back(s) (commits acknowledged 7, not 0)",
		`promotion:   semi-sync said "kept"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	writeNode(&b, &nodestatus.Status{Host: "db1", PollAge: -1, MySQL: &nodestatus.MySQL{SemiSync: &nodestatus.SemiSync{State: "semi-sync off"}}}, "local")
	if strings.Contains(b.String(), "semi-sync") {
		t.Errorf("semi-sync shown while not used:\n%s", b.String())
	}
}
