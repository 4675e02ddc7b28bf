package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeWritesTrackFile: the daemon keeps keepalived's track file in
// state_dir by default, and status reports it; inetd and status, one-shot
// modes, never write it.
func TestServeWritesTrackFile(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cfg, stateDir := writeConfig(t, fmt.Sprintf("listen = %q\nhttp_listen = \"\"", addr))
	track := filepath.Join(stateDir, "mysql.track")

	runBin(t, "writer\n", "-c", cfg, "inetd")
	if out, _, code := runBin(t, "", "-c", cfg, "status"); code != 0 || !strings.Contains(out, "track file:  "+track+": none yet") {
		t.Fatalf("status before serve: %d\n%s", code, out)
	}
	if _, err := os.Stat(track); err == nil {
		t.Fatal("a one-shot mode wrote the track file")
	}

	cmd := exec.Command(bin, "-c", cfg, "serve")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	// No mysqld at the socket: not running, so 1 at the first poll.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(track)
		if strings.HasPrefix(string(b), "1 agentcheck: ") && strings.Contains(string(b), "no socket at") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("track file after 10s: %q", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, _, code := runBin(t, "", "-c", cfg, "status")
	if code != 0 || !strings.Contains(out, "track file:  "+track+" says 1 (unfit: keepalived holds the instance in FAULT), written by agentcheck ") {
		t.Fatalf("status: %d\n%s", code, out)
	}
}
