package tcpreset

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The stale-client scenario in network namespaces created (and
// removed) here, with addresses from 192.0.2.0/24 only: idle clients
// connected to the VIP on node "o"; the VIP moves to node "n"; sending one
// out-of-window segment per connection from o makes every client close
// within 2 s (the challenge ACK reaches n, whose kernel answers RST).

const (
	helperEnv = "VGN_TCPRESET_HELPER"
	vip       = "192.0.2.10"
	clients   = 5
)

// TestHelperProcess is the server, client and sender run inside the
// namespaces (re-executed through "ip netns exec").
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("helper for TestStaleClientsReset")
	case "server":
		l, err := net.Listen("tcp", "0.0.0.0:3306")
		if err != nil {
			fmt.Println("listen:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		var held []net.Conn // like mysqld: sessions stay open, idle
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(1)
			}
			held = append(held, c)
		}
	case "client":
		var held []net.Conn
		for i := 0; i < clients; i++ {
			c, err := net.DialTimeout("tcp", vip+":3306", 2*time.Second)
			if err != nil {
				fmt.Println("dial:", err)
				os.Exit(1)
			}
			held = append(held, c)
		}
		fmt.Println("ready")
		time.Sleep(time.Minute)
	case "send":
		conns, err := Stale(netip.MustParseAddr(vip))
		if err != nil {
			fmt.Println("stale:", err)
			os.Exit(1)
		}
		n, err := Send(conns)
		fmt.Printf("stale=%d sent=%d err=%v\n", len(conns), n, err)
	case "reset":
		log := slog.New(slog.NewTextHandler(os.Stdout, nil))
		if err := Reset(context.Background(), vip, log); err != nil {
			fmt.Println("reset:", err)
			os.Exit(1)
		}
	}
	os.Exit(0)
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%q: %v\n%s", args, err, out)
	}
	return string(out)
}

// helper starts this test binary as role inside namespace ns and waits for
// its "ready" line when wait is set.
func helper(t *testing.T, ns, role string, wait bool) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+role)
	if !wait {
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s in %s: %v\n%s", role, ns, err, out)
		}
		return nil, string(out)
	}
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 64)
	n, _ := stdout.Read(buf)
	if !strings.Contains(string(buf[:n]), "ready") {
		t.Fatalf("%s in %s: %q", role, ns, buf[:n])
	}
	return cmd, ""
}

func established(t *testing.T, ns string) int {
	out := run(t, "ip", "netns", "exec", ns, "ss", "-Htn", "state", "established", "dst", vip)
	return len(strings.Fields(strings.TrimSpace(out))) / 4
}

func TestStaleClientsReset(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	p := fmt.Sprintf("vgn%d", os.Getpid())
	br, c, o, n := p+"b", p+"c", p+"o", p+"n"
	for _, ns := range []string{br, c, o, n} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	run(t, "ip", "-n", br, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", br, "link", "set", "br0", "up")
	for i, x := range []struct{ ns, addr string }{{c, "192.0.2.20/24"}, {o, "192.0.2.11/24"}, {n, "192.0.2.12/24"}} {
		peer := fmt.Sprintf("p%d", i)
		run(t, "ip", "-n", x.ns, "link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", br)
		run(t, "ip", "-n", br, "link", "set", peer, "master", "br0", "up")
		run(t, "ip", "-n", x.ns, "addr", "add", x.addr, "dev", "eth0")
		run(t, "ip", "-n", x.ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", x.ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", o, "addr", "add", vip+"/32", "dev", "eth0")

	helper(t, o, "server", true)
	helper(t, c, "client", true)
	if got := established(t, c); got != clients {
		t.Fatalf("%d clients established, want %d", got, clients)
	}
	// keepalived moves the VIP: gone from o, added on n (with gratuitous
	// ARP, which the neighbour flush stands in for).
	run(t, "ip", "-n", o, "addr", "del", vip+"/32", "dev", "eth0")
	run(t, "ip", "-n", n, "addr", "add", vip+"/32", "dev", "eth0")
	run(t, "ip", "-n", c, "neigh", "flush", "dev", "eth0")
	time.Sleep(300 * time.Millisecond)
	if got := established(t, c); got != clients {
		t.Fatalf("%d clients established after the move, want all %d stale (the test would prove nothing)", got, clients)
	}
	// The raw segments alone, without closing o's sockets, must end them.
	_, out := helper(t, o, "send", false)
	t.Logf("sender: %s", strings.TrimSpace(out))
	if !strings.Contains(out, fmt.Sprintf("stale=%d sent=%d", clients, clients)) {
		t.Fatalf("sender: %s", out)
	}
	deadline := time.Now().Add(2 * time.Second)
	for established(t, c) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients still established 2 s after the reset", established(t, c))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Reset also closes o's own sockets of the VIP.
	_, out = helper(t, o, "reset", false)
	t.Logf("reset: %s", strings.TrimSpace(out))
	if left := strings.TrimSpace(run(t, "ip", "netns", "exec", o, "ss", "-Htn", "src", vip)); left != "" {
		t.Fatalf("local sockets left on o:\n%s", left)
	}
}
