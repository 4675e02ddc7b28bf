package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/testsupport/clitest"

	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

var notifyBin string

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestMain(m *testing.M) { clitest.Main(m, "notify", &notifyBin) }

type result struct {
	code           int
	stdout, stderr string
}

func notify(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	r := clitest.Run(t, ctx, "", notifyBin, args...)
	return result{r.Code, r.Stdout, r.Stderr}
}

// pairConfig starts a pair (a writable, table vgtest.t) and writes a's
// configuration; peer fencing uses an account created here.
func pairConfig(t *testing.T, extra string) (a, b *mariadbtest.Server, cfgPath, stateDir string) {
	t.Helper()
	a, b = mariadbtest.Pair(t, mariadbtest.PairOptions{})
	ctx := context.Background()
	for _, s := range []*mariadbtest.Server{a, b} {
		if err := s.Exec(ctx, "SET SESSION sql_log_bin=0",
			"CREATE USER 'fencer'@'%' IDENTIFIED BY 'fencer-pass'", "GRANT ALL ON *.* TO 'fencer'@'%'"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Exec(ctx, "SET GLOBAL read_only=OFF", "CREATE TABLE vgtest.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)"); err != nil {
		t.Fatal(err)
	}
	if err := b.SyncWith(ctx, a, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	stateDir = filepath.Join(dir, "state")
	cfgPath = filepath.Join(dir, "vipguard.toml")
	cfg := fmt.Sprintf(`state_dir = %q
[mysql]
socket = %q
user = "root"
[peer]
host = %q
port = %d
user = "fencer"
password = "fencer-pass"
[notify]
instance = "VI_1"
promotion_timeout = "10s"
%s
`, stateDir, a.Socket, b.Host, b.Port, extra)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return a, b, cfgPath, stateDir
}

func readOnly(t *testing.T, s *mariadbtest.Server) bool {
	v, err := s.Query(context.Background(), "SELECT @@global.read_only")
	if err != nil {
		t.Fatal(err)
	}
	return v == "1"
}

func TestUsageAndConfigErrors(t *testing.T) {
	ctx := context.Background()
	if r := notify(t, ctx, "-c", "/nonexistent/vipguard.toml", "INSTANCE", "VI_1", "BACKUP", "100"); r.code != exitConfig ||
		!strings.HasPrefix(r.stderr, "notify: error: ") {
		t.Errorf("missing config: %+v", r)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[notify]\npolicy = \"yolo\"\n"), 0o600)
	if r := notify(t, ctx, "-c", bad, "INSTANCE", "VI_1", "BACKUP", "100"); r.code != exitConfig || !strings.Contains(r.stderr, `"yolo"`) {
		t.Errorf("bad policy: %+v", r)
	}
	good := filepath.Join(t.TempDir(), "good.toml")
	os.WriteFile(good, []byte("state_dir = \"/tmp/vgn-unused\"\n"), 0o600)
	for _, args := range [][]string{
		{"INSTANCE", "VI_1"},
		{"VRRP", "VI_1", "MASTER", "100"},
		{"INSTANCE", "VI_1", "MASTER", "high"},
	} {
		if r := notify(t, ctx, append([]string{"-c", good}, args...)...); r.code != exitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", args, r.code, exitUsage, r.stderr)
		}
	}
	if r := notify(t, ctx, "--bogus"); r.code != exitUsage {
		t.Errorf("unknown flag: exit %d", r.code)
	}
}

// --dry-run prints the plan and the statements, and changes nothing.
func TestDryRun(t *testing.T) {
	a, _, cfg, stateDir := pairConfig(t, "")
	ctx := context.Background()
	app, err := a.DB(mariadbtest.AppUser, mariadbtest.AppPassword)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	conn, err := app.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var id int
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	r := notify(t, ctx, "--dry-run", "-c", cfg, "INSTANCE", "VI_1", "BACKUP", "100")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"plan for INSTANCE \"VI_1\" BACKUP", "SQL (not run): SET GLOBAL read_only = ON",
		fmt.Sprintf("SQL (not run): KILL CONNECTION %d", id), "would record outcome"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	// The log says what would happen, never that it is happening.
	if !strings.Contains(r.stderr, "would kill client thread") || !strings.Contains(r.stderr, "would_kill=") ||
		strings.Contains(r.stderr, "killing client thread") || strings.Contains(r.stderr, "killed=") {
		t.Errorf("dry-run log should say \"would kill client thread\" only:\n%s", r.stderr)
	}
	if readOnly(t, a) {
		t.Fatal("dry-run set read_only")
	}
	if err := conn.PingContext(ctx); err != nil {
		t.Fatalf("dry-run killed a session: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "outcome.json")); err == nil {
		t.Fatal("dry-run wrote an outcome")
	}
	r = notify(t, ctx, "--dry-run", "-c", cfg, "INSTANCE", "VI_1", "MASTER", "100")
	if r.code != 0 || !strings.Contains(r.stdout, "SQL (not run): SET GLOBAL read_only = OFF") || !strings.Contains(r.stdout, "peer SQL (not run): SET GLOBAL read_only = ON") {
		t.Fatalf("dry-run MASTER: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if readOnly(t, a) {
		t.Fatal("dry-run changed read_only")
	}
}

// keepalived SIGKILLs the process group about 1 s into its shutdown: the
// STOP fence must have done its work by then, even with a slow INSERT
// running.
func TestStopFenceBeforeSIGKILL(t *testing.T) {
	a, _, cfg, stateDir := pairConfig(t, "")
	ctx := context.Background()
	app, err := a.DB(mariadbtest.AppUser, mariadbtest.AppPassword)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	slow := make(chan error, 1)
	go func() {
		_, err := app.ExecContext(ctx, "INSERT INTO vgtest.t (v) SELECT SLEEP(4)")
		slow <- err
	}()
	for i := 0; ; i++ {
		n, _ := a.Query(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'INSERT INTO vgtest.t%'")
		if n == "1" {
			break
		}
		if i > 200 {
			t.Fatal("slow INSERT not running")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd := exec.Command(notifyBin, "-c", cfg, "INSTANCE", "VI_1", "STOP", "100")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var errb syncBuffer
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Logf("STOP fence exited by itself after %s (%v)", time.Since(start), err)
	case <-time.After(time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Logf("STOP fence SIGKILLed after 1s, as keepalived does")
	}
	t.Logf("notify stderr:\n%s", errb.String())
	if !readOnly(t, a) {
		t.Fatal("not read-only after STOP")
	}
	if err := <-slow; err == nil {
		t.Fatal("slow INSERT committed")
	}
	o, err := state.Dir(stateDir).Outcome()
	if err != nil || o == nil || o.Event != "STOP" || o.Position == nil {
		t.Fatalf("outcome %+v %v", o, err)
	}
	time.Sleep(4 * time.Second)
	if n, _ := a.Query(ctx, "SELECT COUNT(*) FROM vgtest.t"); n != "0" {
		t.Fatalf("%s rows: the killed INSERT committed", n)
	}
}

// notify_fifo: events are read in order, other instances ignored, and after
// SIGTERM reading goes on until the STOP line is handled.
func TestFIFO(t *testing.T) {
	a, _, cfg, stateDir := pairConfig(t, "")
	fifo := filepath.Join(t.TempDir(), "keepalived.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(notifyBin, "-c", cfg, "fifo", fifo)
	var errb syncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("notify stderr:\n%s", errb.String())
		}
	}()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fmt.Fprintf(w, "INSTANCE \"OTHER\" BACKUP 50\nVS \"10.0.0.1:80\" UP\nINSTANCE \"VI_1\" FAULT 100\n")
	dir := state.Dir(stateDir)
	waitOutcome := func(event string, phase state.Phase) *state.Outcome {
		t.Helper()
		for i := 0; i < 300; i++ {
			if o, _ := dir.Outcome(); o != nil && o.Event == event && o.Phase == phase {
				return o
			}
			time.Sleep(20 * time.Millisecond)
		}
		o, _ := dir.Outcome()
		t.Fatalf("no %s/%s outcome; last %+v", event, phase, o)
		return nil
	}
	waitOutcome("FAULT", "done")
	if !readOnly(t, a) {
		t.Fatal("FAULT line did not fence")
	}
	if g, _ := dir.Generation(); g.N != 1 {
		t.Fatalf("generation %d: the OTHER instance's line was not ignored", g.N)
	}
	fmt.Fprintf(w, "INSTANCE \"VI_1\" MASTER 100\n")
	waitOutcome("MASTER", "done")
	if readOnly(t, a) {
		t.Fatal("MASTER line did not open writes")
	}
	// keepalived shutdown: SIGTERM first, the STOP line after it.
	cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("exited on SIGTERM before the STOP line: %v", err)
	default:
	}
	fmt.Fprintf(w, "INSTANCE \"VI_1\" STOP 100\n")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("did not exit after the STOP line")
	}
	if o := waitOutcome("STOP", "done"); o.Role != "standby" {
		t.Fatalf("outcome %+v", o)
	}
	if !readOnly(t, a) {
		t.Fatal("STOP line did not fence")
	}
}

// SIGTERM (keepalived restart) during a promotion waiting at its gate:
// exit 5, node read-only, never half-promoted.
func TestSIGTERMDuringPromotion(t *testing.T) {
	a, b, _, _ := pairConfig(t, "")
	ctx := context.Background()
	// Promote b, whose SQL thread is stopped: it waits at its gate.
	if err := b.Exec(ctx, "STOP SLAVE SQL_THREAD"); err != nil {
		t.Fatal(err)
	}
	if err := a.Exec(ctx, "INSERT INTO vgtest.t (v) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bcfg := filepath.Join(dir, "b.toml")
	os.WriteFile(bcfg, []byte(fmt.Sprintf(`state_dir = %q
[mysql]
socket = %q
user = "root"
[peer]
host = %q
port = %d
user = "fencer"
password = "fencer-pass"
`, filepath.Join(dir, "state"), b.Socket, a.Host, a.Port)), 0o600)
	cmd := exec.Command(notifyBin, "-c", bcfg, "INSTANCE", "VI_1", "MASTER", "100")
	var errb syncBuffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; !strings.Contains(errb.String(), "step=gate"); i++ {
		if i > 500 {
			t.Fatalf("never reached the gate:\n%s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("exit %v, want %d:\n%s", err, exitInterrupted, errb.String())
	}
	if !readOnly(t, b) || !readOnly(t, a) {
		t.Fatal("a node writable after an interrupted promotion")
	}
}

func TestIsDevNull(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if !isDevNull(null) {
		t.Error("/dev/null not recognised")
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isDevNull(f) || logDestination(f) != f {
		t.Error("a regular file taken for /dev/null")
	}
}

// offlineConfig is a configuration whose MySQL is absent: enough for what
// notify decides before it connects.
func offlineConfig(t *testing.T) (cfgPath, stateDir string) {
	t.Helper()
	dir := t.TempDir()
	stateDir = filepath.Join(dir, "state")
	cfgPath = filepath.Join(dir, "vipguard.toml")
	body := fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\n[notify]\ninstance = \"VI_1\"\n", stateDir, filepath.Join(dir, "none.sock"))
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, stateDir
}

// keepalived reuses a FIFO that exists: one that another user owns or may
// write to would let them inject a MASTER line (a promotion). notify
// refuses it at once and says how to fix it; nothing is read or recorded.
func TestFIFORefusesUntrusted(t *testing.T) {
	cfg, stateDir := offlineConfig(t)
	dir := t.TempDir()
	mkfifo := func(name string, mode uint32) string {
		p := filepath.Join(dir, name)
		if err := syscall.Mkfifo(p, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, os.FileMode(mode))
		return p
	}
	own := mkfifo("own", 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(own, link)
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, nil, 0o600)
	cases := []struct{ name, path, want string }{
		{"group writable", mkfifo("gw", 0o620), `(mode 0620); run: chmod go-w`},
		{"others writable", mkfifo("ow", 0o622), `is writable by its group or others`},
		{"symlink", link, `is a symbolic link, which is not followed; name the file it points to ("` + own + `")`},
		{"regular file", regular, "is a regular file, not a FIFO"},
	}
	if os.Geteuid() == 0 {
		foreign := mkfifo("foreign", 0o600)
		os.Chown(foreign, 65534, 65534)
		cases = append(cases, struct{ name, path, want string }{"foreign owner", foreign,
			`fifo "` + foreign + `" is owned by uid 65534, not by the user running this (uid 0); run: chown 0`})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// The attacker's line, written as soon as someone reads.
			go func() {
				for ctx.Err() == nil {
					if w, err := os.OpenFile(tc.path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
						fmt.Fprintf(w, "INSTANCE \"VI_1\" MASTER 100\n")
						w.Close()
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			r := notify(t, ctx, "-c", cfg, "fifo", tc.path)
			if r.code != exitFailed || !strings.HasPrefix(r.stderr, "notify: error: fifo ") || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %q", r.code, r.stderr, tc.want)
			}
			if _, err := os.Stat(filepath.Join(stateDir, "generation.json")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("an event was recorded: %v", err)
			}
		})
	}
}

// An unknown keepalived state changes nothing, and is not recorded as the
// newest event (which would supersede a run in progress).
func TestUnknownStateNotRecorded(t *testing.T) {
	cfg, stateDir := offlineConfig(t)
	r := notify(t, context.Background(), "-c", cfg, "INSTANCE", "VI_1", "BOGUS", "100")
	if r.code != exitOK || !strings.Contains(r.stderr, "unknown keepalived state") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if g, err := state.Dir(stateDir).Generation(); err != nil || g.N != 0 {
		t.Fatalf("the unknown state was recorded: %+v %v", g, err)
	}
}
