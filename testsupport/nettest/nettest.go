// Package nettest gives tests loopback addresses that behave like the
// network's failure modes, without sending traffic anywhere else.
package nettest

import (
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Silent returns a loopback address whose SYNs are dropped: a listening
// socket with its accept queue full, never accepting. It stands in for a
// host behind a partition. The socket is returned too, so that a test can
// free the queue (accept) later; it is closed when the test ends.
func Silent(t testing.TB) (addr string, fd int) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the queue: once a connect times out, the next ones will too.
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr, fd
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the accept queue never filled")
	return "", 0
}

// Refusing returns a loopback address where nothing listens: a connect is
// answered with a reset.
func Refusing(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}
