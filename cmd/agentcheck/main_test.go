package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/testsupport/clitest"
)

var bin string

func TestMain(m *testing.M) { clitest.Main(m, "agentcheck", &bin) }

// writeConfig writes a configuration for a MySQL that is not there: the
// answers are "down", which is all these process-level tests need.
func writeConfig(t *testing.T, agent string) (path, stateDir string) {
	dir := t.TempDir()
	stateDir = filepath.Join(dir, "state")
	path = filepath.Join(dir, "vipguard.toml")
	toml := fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\n[agent]\ninterval = \"100ms\"\nstale_after = \"500ms\"\n%s\n",
		stateDir, filepath.Join(dir, "no-mysqld.sock"), agent)
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, stateDir
}

// notifySocket listens where sd_notify writes and collects messages.
func notifySocket(t *testing.T) (path string, msgs <-chan string) {
	path = filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ch <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close() })
	return path, ch
}

func expectMsg(t *testing.T, msgs <-chan string, prefix string, limit time.Duration) {
	t.Helper()
	timeout := time.After(limit)
	for {
		select {
		case m := <-msgs:
			if strings.HasPrefix(m, prefix) {
				return
			}
		case <-timeout:
			t.Fatalf("no %q from sd_notify within %s", prefix, limit)
		}
	}
}

func ask(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, req)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSocketActivation hands two listening sockets to agentcheck serve the
// way systemd does: as fds 3 and 4, with LISTEN_FDS, LISTEN_FDNAMES and a
// LISTEN_PID equal to the pid of the process that execs agentcheck.
func TestSocketActivation(t *testing.T) {
	cfg, _ := writeConfig(t, "listen = \"\"\nhttp_listen = \"\"") // only passed sockets
	var files []*os.File
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f, err := l.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close() // the dup in f keeps the socket listening
		files = append(files, f)
	}
	nsock, msgs := notifySocket(t)
	cmd := exec.Command("sh", "-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`, bin, "-c", cfg, "serve")
	cmd.ExtraFiles = files
	cmd.Env = append(os.Environ(), "LISTEN_FDS=2", "LISTEN_FDNAMES=agent:http", "NOTIFY_SOCKET="+nsock, "WATCHDOG_USEC=400000")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		f.Close()
	}
	defer cmd.Process.Kill()
	expectMsg(t, msgs, "READY=1", 5*time.Second)

	if r := ask(t, addrs[0], "writer\n"); !strings.HasPrefix(r, "down #down: ") || !strings.Contains(r, "mysqld is not running") {
		t.Fatalf("agent socket: %q", r)
	}
	if r := ask(t, addrs[1], "GET /liveness HTTP/1.0\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 200 OK\r\n") {
		t.Fatalf("http socket: %q", r)
	}
	// Watchdog pings (every 200ms) while the poll loop turns.
	expectMsg(t, msgs, "WATCHDOG=1", 2*time.Second)

	// SIGHUP reloads; SIGTERM stops cleanly.
	cmd.Process.Signal(syscall.SIGHUP)
	expectMsg(t, msgs, "RELOADING=1", 2*time.Second)
	expectMsg(t, msgs, "READY=1", 2*time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	expectMsg(t, msgs, "STOPPING=1", 2*time.Second)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(shutdownBound + 2*time.Second):
		t.Fatalf("no exit within the shutdown bound\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "using socket from systemd") {
		t.Fatalf("log does not mention the passed sockets:\n%s", stderr.String())
	}
}

// TestReadyAfterBind: without socket activation, READY=1 comes only once
// agentcheck's own listener answers.
func TestReadyAfterBind(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cfg, _ := writeConfig(t, fmt.Sprintf("listen = %q\nhttp_listen = \"\"", addr))
	nsock, msgs := notifySocket(t)
	cmd := exec.Command(bin, "-c", cfg, "serve")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+nsock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	expectMsg(t, msgs, "READY=1", 5*time.Second)
	if r := ask(t, addr, "liveness\n"); !strings.HasPrefix(r, "up") {
		t.Fatalf("right after READY: %q", r)
	}
}

func runBin(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	r := clitest.Run(t, context.Background(), stdin, bin, args...)
	return r.Stdout, r.Stderr, r.Code
}

func TestInetd(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	out, _, code := runBin(t, "writer\n", "-c", cfg, "inetd")
	if code != 0 || !strings.HasPrefix(out, "down #down: ") || !strings.Contains(out, "mysqld is not running") || strings.Count(out, "\n") != 1 {
		t.Fatalf("agent request: %d %q", code, out)
	}
	out, _, code = runBin(t, "GET /liveness HTTP/1.0\r\nHost: x\r\n\r\n", "-c", cfg, "inetd")
	if code != 0 || !strings.HasPrefix(out, "HTTP/1.1 200 OK\r\n") {
		t.Fatalf("http request: %d %q", code, out)
	}
	out, _, code = runBin(t, "GET /primary HTTP/1.0\r\n\r\n", "-c", cfg, "inetd")
	if code != 0 || !strings.HasPrefix(out, "HTTP/1.1 503 ") {
		t.Fatalf("http /primary: %d %q", code, out)
	}
	_, errOut, code := runBin(t, "", "-c", cfg, "inetd")
	if code != 1 || !strings.HasPrefix(errOut, "agentcheck: error: no check answered") {
		t.Fatalf("empty request: %d %q", code, errOut)
	}

	// A client that connects and says nothing costs a bounded wait.
	quick, _ := writeConfig(t, "io_timeout = \"300ms\"")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	cmd := exec.Command(bin, "-c", quick, "inetd")
	cmd.Stdin = pr
	start := time.Now()
	err = cmd.Run()
	pr.Close()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || time.Since(start) > 3*time.Second {
		t.Fatalf("silent client: %v after %s", err, time.Since(start))
	}
}

func TestMaintStatusAndExitCodes(t *testing.T) {
	cfg, stateDir := writeConfig(t, "")
	out, _, code := runBin(t, "", "-c", cfg, "maint", "on", "--reason", "disk swap")
	if code != 0 || !strings.HasPrefix(out, "maintenance: on") || !strings.Contains(out, "(disk swap)") {
		t.Fatalf("maint on: %d %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "maintenance")); err != nil {
		t.Fatal(err)
	}
	out, _, code = runBin(t, "", "-c", cfg, "status")
	if code != 0 || !strings.Contains(out, "maintenance: on") || !strings.Contains(out, "writer") || !strings.Contains(out, "/replica") {
		t.Fatalf("status: %d\n%s", code, out)
	}
	out, _, code = runBin(t, "", "-c", cfg, "maint", "off")
	if code != 0 || out != "maintenance: off\n" {
		t.Fatalf("maint off: %d %q", code, out)
	}
	if _, errOut, code := runBin(t, "", "-c", filepath.Join(t.TempDir(), "missing.toml"), "status"); code != 2 || !strings.HasPrefix(errOut, "agentcheck: error: ") {
		t.Fatalf("missing config: %d %q", code, errOut)
	}
	if _, _, code := runBin(t, "", "bogus"); code != 80 {
		t.Fatalf("usage error: %d", code)
	}
	bad, _ := writeConfig(t, "maintenance = \"ready\"")
	if _, errOut, code := runBin(t, "", "-c", bad, "serve"); code != 2 || !strings.Contains(errOut, "agent.maintenance") {
		t.Fatalf("bad config: %d %q", code, errOut)
	}
}

// A FIFO planted in state_dir must not wedge the daemon: checks, and
// /liveness first, keep being answered, the watchdog keeps being pinged
// because they are, status answers, and SIGTERM stops it.
func TestStateFIFO(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cfg, stateDir := writeConfig(t, fmt.Sprintf("listen = %q\nhttp_listen = \"\"", addr))
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"maintenance", "outcome.json"} {
		if err := syscall.Mkfifo(filepath.Join(stateDir, name), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	nsock, msgs := notifySocket(t)
	cmd := exec.Command(bin, "-c", cfg, "serve")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+nsock, "WATCHDOG_USEC=400000")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	expectMsg(t, msgs, "READY=1", 5*time.Second)
	for _, req := range []string{"liveness\n", "GET /liveness HTTP/1.0\r\n\r\n"} {
		if r := ask(t, addr, req); !strings.HasPrefix(r, "up") && !strings.HasPrefix(r, "HTTP/1.1 200 OK") {
			t.Fatalf("%q: %q", req, r)
		}
	}
	if r := ask(t, addr, "writer\n"); !strings.HasPrefix(r, "down") {
		t.Fatalf("writer: %q", r)
	}
	expectMsg(t, msgs, "WATCHDOG=1", 2*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := clitest.Run(t, ctx, "", bin, "-c", cfg, "status")
	if r.Code != 0 || !strings.Contains(r.Stdout, "maintenance: on") || !strings.Contains(r.Stdout, "is a FIFO") {
		t.Fatalf("status: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(shutdownBound + 2*time.Second):
		t.Fatalf("no exit after SIGTERM\n%s", stderr.String())
	}
}

// -c naming a FIFO, a device or a huge file is a configuration error at
// once, never a wait or a read without end.
func TestConfigNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.toml")
	f, _ := os.Create(big)
	f.Truncate(100 << 20)
	f.Close()
	for _, tc := range []struct{ path, want string }{
		{fifo, "is a FIFO, not a regular file"},
		{"/dev/zero", "is a character device, not a regular file"},
		{big, "is larger than 1 MiB"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r := clitest.Run(t, ctx, "", bin, "-c", tc.path, "serve")
		cancel()
		if r.Code != 2 || !strings.HasPrefix(r.Stderr, "agentcheck: error: config ") || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("-c %s: exit %d after %s, %q", tc.path, r.Code, r.Took, r.Stderr)
		}
	}
}

// Maintenance reasons: capped when given, escaped when shown.
func TestMaintReason(t *testing.T) {
	cfg, _ := writeConfig(t, "")
	_, errOut, code := runBin(t, "", "-c", cfg, "maint", "on", "--reason", strings.Repeat("x", 70000))
	if code != 1 || !strings.Contains(errOut, "maintenance reason is 70000 bytes long; at most 1024") {
		t.Fatalf("long reason: %d %q", code, errOut)
	}
	out, _, code := runBin(t, "", "-c", cfg, "maint", "on", "--reason", "swap\x1b[2J\rmaintenance: off")
	if code != 0 || strings.ContainsAny(out, "\x1b\r") || !strings.Contains(out, `(swap\x1b[2J\x0dmaintenance: off)`) {
		t.Fatalf("maint on: %d %q", code, out)
	}
	out, _, _ = runBin(t, "", "-c", cfg, "status")
	if strings.ContainsAny(out, "\x1b\r") {
		t.Fatalf("status shows control bytes: %q", out)
	}
}
