package tcpreset

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newNetns creates a network namespace removed at the end of the test, with
// lo up and the given commands run in it ("ip -n NS" prefixed).
func newNetns(t *testing.T, setup ...[]string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	ns := fmt.Sprintf("vgl%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	for _, args := range setup {
		run(t, append([]string{"ip", "-n", ns}, args...)...)
	}
	return ns
}

// inNetns runs f on an OS thread moved into namespace ns. The thread is
// never handed back to the runtime (it exits with the goroutine), so no other
// goroutine ever runs in ns; sockets f creates belong to ns.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns: %w", err)
			return
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The kernel's word decides: an address delivered locally by a route is
// local although no interface carries it; an address on an interface is
// local; an address the node merely routes to is not.
func TestKernelSaysLocal(t *testing.T) {
	ns := newNetns(t,
		[]string{"link", "add", "eth0", "type", "veth", "peer", "name", "eth1"},
		[]string{"link", "set", "eth0", "up"},
		[]string{"addr", "add", "192.0.2.11/24", "dev", "eth0"},
		[]string{"route", "add", "local", "192.0.2.50/32", "dev", "lo", "table", "local"},
	)
	for _, tc := range []struct {
		addr  string
		local bool
	}{
		{"192.0.2.50", true},  // route of type local
		{"192.0.2.11", true},  // interface address
		{"192.0.2.51", false}, // on the link, not ours
	} {
		var local bool
		var err error
		inNetns(t, ns, func() { local, err = isLocal(netip.MustParseAddr(tc.addr)) })
		if err != nil || local != tc.local {
			t.Errorf("%s: local=%v err=%v, want local=%v", tc.addr, local, err, tc.local)
		}
	}
}

// When the kernel cannot be asked, the sessions may be live: never reset.
func TestStillLocalWhenUnsure(t *testing.T) {
	defer func(f func(netip.Addr) (bool, error)) { isLocal = f }(isLocal)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	vip := netip.MustParseAddr("192.0.2.10")
	for _, tc := range []struct {
		local bool
		err   error
		want  bool
	}{
		{true, nil, true},
		{false, nil, false},
		{false, errors.New("netlink receive: resource temporarily unavailable"), true},
	} {
		isLocal = func(netip.Addr) (bool, error) { return tc.local, tc.err }
		if got := stillLocal(vip, log); got != tc.want {
			t.Errorf("local=%v err=%v: stillLocal=%v, want %v", tc.local, tc.err, got, tc.want)
		}
	}
}

// closeLocal closes the connections recorded at the start and nothing else:
// a session opened on the VIP since then survives.
func TestCloseLocalOnlyRecorded(t *testing.T) {
	ns := newNetns(t,
		[]string{"addr", "add", vip + "/32", "dev", "lo"},
		[]string{"addr", "add", "192.0.2.20/32", "dev", "lo"},
	)
	const recorded = 3
	var served, clientConns []net.Conn
	inNetns(t, ns, func() {
		l, err := net.Listen("tcp", vip+":3306")
		if err != nil {
			t.Error(err)
			return
		}
		defer l.Close()
		for range recorded + 1 {
			c, s, err := session(l, "192.0.2.20", vip+":3306")
			if err != nil {
				t.Error(err)
				return
			}
			clientConns, served = append(clientConns, c), append(served, s)
		}
	})
	t.Cleanup(func() {
		for _, c := range append(served, clientConns...) {
			c.Close()
		}
	})
	if len(served) != recorded+1 {
		t.Fatalf("%d sessions set up", len(served))
	}
	var conns []Conn
	for _, s := range served[:recorded] {
		conns = append(conns, Conn{
			Local:  s.LocalAddr().(*net.TCPAddr).AddrPort(),
			Remote: s.RemoteAddr().(*net.TCPAddr).AddrPort(),
			State:  1,
		})
	}
	var err error
	inNetns(t, ns, func() { err = closeLocal(conns, slog.New(slog.NewTextHandler(io.Discard, nil))) })
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	for i, s := range served[:recorded] {
		s.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := s.Read(buf)
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("recorded session %d still open: %v", i, err)
		}
	}
	live, peer := served[recorded], clientConns[recorded]
	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatalf("live session: client write: %v", err)
	}
	live.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := live.Read(buf); err != nil {
		t.Fatalf("the session opened after the recording was closed: %v", err)
	}
}

// A recorded connection that ended before closeLocal runs must not take
// the listener with it: the kernel, asked to destroy a 4-tuple that no
// longer exists, would pick the socket listening on the local port —
// mysqld's — which then fails every accept. Dual-stack listeners (whose
// IPv4 clients are IPv6 sockets) are covered too.
func TestCloseLocalSparesListener(t *testing.T) {
	ns := newNetns(t,
		[]string{"addr", "add", vip + "/32", "dev", "lo"},
		[]string{"addr", "add", "192.0.2.20/32", "dev", "lo"},
	)
	for _, network := range []string{"tcp4", "tcp"} {
		t.Run(network, func(t *testing.T) {
			var l net.Listener
			var conns []Conn
			inNetns(t, ns, func() {
				var err error
				if l, err = net.Listen(network, ":3306"); err != nil {
					t.Error(err)
					return
				}
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.20")}, Timeout: 2 * time.Second}
				c, err := d.Dial("tcp4", vip+":3306")
				if err != nil {
					t.Error(err)
					return
				}
				s, err := l.Accept()
				if err != nil {
					t.Error(err)
					return
				}
				conns = append(conns, Conn{Local: s.LocalAddr().(*net.TCPAddr).AddrPort(), Remote: s.RemoteAddr().(*net.TCPAddr).AddrPort(), State: 1})
				// The session ends before the reset gets to it.
				c.Close()
				s.Close()
			})
			if t.Failed() {
				return
			}
			defer l.Close()
			conns[0].Local = netip.AddrPortFrom(conns[0].Local.Addr().Unmap(), conns[0].Local.Port())
			var err error
			inNetns(t, ns, func() { err = closeLocal(conns, slog.New(slog.NewTextHandler(io.Discard, nil))) })
			if err != nil {
				t.Fatal(err)
			}
			inNetns(t, ns, func() {
				c, err := net.DialTimeout("tcp4", vip+":3306", 2*time.Second)
				if err != nil {
					t.Errorf("dial after closeLocal: %v", err)
					return
				}
				defer c.Close()
				l.(*net.TCPListener).SetDeadline(time.Now().Add(2 * time.Second))
				s, err := l.Accept()
				if err != nil {
					t.Errorf("the listener no longer accepts after closeLocal: %v", err)
					return
				}
				s.Close()
			})
		})
	}
}

// CloseAccepted ends every session accepted on the port except the spared
// peer's and the VIP's, and whatever the server writes afterwards (a hung server that
// runs again answering the statement it already read) reaches no client;
// the listener keeps accepting.
func TestCloseAcceptedSparesPeer(t *testing.T) {
	const peerAddr = "192.0.2.12"
	ns := newNetns(t,
		[]string{"addr", "add", "192.0.2.11/32", "dev", "lo"},
		[]string{"addr", "add", "192.0.2.20/32", "dev", "lo"},
		[]string{"addr", "add", peerAddr + "/32", "dev", "lo"},
		[]string{"addr", "add", vip + "/32", "dev", "lo"},
	)
	var l net.Listener
	var served, clients []net.Conn
	inNetns(t, ns, func() {
		var err error
		if l, err = net.Listen("tcp", ":3306"); err != nil {
			t.Error(err)
			return
		}
		// Two clients, the peer, and a client of the VIP.
		for _, ft := range [][2]string{{"192.0.2.20", "192.0.2.11"}, {"192.0.2.20", "192.0.2.11"}, {peerAddr, "192.0.2.11"}, {"192.0.2.20", vip}} {
			c, s, err := session(l, ft[0], ft[1]+":3306")
			if err != nil {
				t.Error(err)
				return
			}
			clients, served = append(clients, c), append(served, s)
		}
	})
	t.Cleanup(func() {
		for _, c := range append(served, clients...) {
			c.Close()
		}
		if l != nil {
			l.Close()
		}
	})
	if len(served) != 4 {
		t.Fatalf("%d sessions set up", len(served))
	}
	vipServed, vipClient := served[3], clients[3]
	// A request the server has not read yet.
	if _, err := clients[0].Write([]byte("INSERT")); err != nil {
		t.Fatal(err)
	}
	var n int
	var err error
	inNetns(t, ns, func() {
		n, err = CloseAccepted(Sessions{Port: 3306, SpareFrom: []netip.Addr{netip.MustParseAddr(peerAddr)},
			SpareTo: []netip.Addr{netip.MustParseAddr(vip)}})
	})
	if err != nil || n != 2 {
		t.Fatalf("closed %d sessions (%v), want the 2 clients'", n, err)
	}
	buf := make([]byte, 16)
	for i, s := range served[:2] {
		_, _ = s.Write([]byte("OK"))
		c := clients[i]
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if k, err := c.Read(buf); err == nil {
			t.Errorf("client %d received %q from a closed session", i, buf[:k])
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("client %d was not told its session ended", i)
		}
	}
	for what, sc := range map[string][2]net.Conn{"the peer's": {served[2], clients[2]}, "the VIP's": {vipServed, vipClient}} {
		if _, err := sc[0].Write([]byte("OK")); err != nil {
			t.Fatalf("%s session was closed: %v", what, err)
		}
		sc[1].SetReadDeadline(time.Now().Add(2 * time.Second))
		if k, err := sc[1].Read(buf); err != nil || string(buf[:k]) != "OK" {
			t.Fatalf("%s session: %q, %v", what, buf[:k], err)
		}
	}
	inNetns(t, ns, func() {
		c, err := net.DialTimeout("tcp", "192.0.2.11:3306", 2*time.Second)
		if err != nil {
			t.Errorf("the listener stopped accepting: %v", err)
			return
		}
		c.Close()
	})
}

// session connects from one local address to another through l and
// returns both ends.
func session(l net.Listener, from, to string) (client, served net.Conn, err error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
	if client, err = d.Dial("tcp", to); err != nil {
		return nil, nil, err
	}
	if served, err = l.Accept(); err != nil {
		client.Close()
		return nil, nil, err
	}
	return client, served, nil
}
