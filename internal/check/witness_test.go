package check

import (
	"context"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// silentAddr returns a loopback address whose SYNs are dropped: a
// listening socket with its accept queue full, never accepting. It stands
// in for a witness behind a partition without sending traffic anywhere.
func silentAddr(t *testing.T) string { a, _ := silentListener(t); return a }

// silentListener is silentAddr with the listening socket, so that a test
// can free its queue.
func silentListener(t *testing.T) (string, int) {
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
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the queue: once a connect times out, the next ones will too.
	for i := 0; i < 8; i++ {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr, fd
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the accept queue never filled")
	return "", 0
}

func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func TestProbeWitnesses(t *testing.T) {
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	silent, refused := silentAddr(t), closedAddr(t)
	ctx := context.Background()
	const timeout = 300 * time.Millisecond

	if w := ProbeWitnesses(ctx, nil, timeout); w != nil || w.Isolated() {
		t.Fatalf("no witnesses configured: got %+v", w)
	}
	if w := ProbeWitnesses(ctx, []string{open.Addr().String()}, timeout); w.Isolated() || w.Reached != open.Addr().String() {
		t.Fatalf("listening witness: %+v", w)
	}
	// Refused is an answer: the host and the path to it are there.
	if w := ProbeWitnesses(ctx, []string{refused}, timeout); w.Isolated() {
		t.Fatalf("refusing witness counted as unreachable: %+v", w)
	}
	w := ProbeWitnesses(ctx, []string{silent}, timeout)
	if !w.Isolated() || len(w.Failures) != 1 || !strings.Contains(w.Failures[0], "no answer within 300ms") {
		t.Fatalf("silent witness: %+v", w)
	}
	// One answer is enough, whatever the others do.
	if w := ProbeWitnesses(ctx, []string{silent, refused}, timeout); w.Isolated() || w.Reached != refused {
		t.Fatalf("silent and refusing witnesses: %+v", w)
	}
	// The caller's deadline bounds the probe too.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if w := ProbeWitnesses(short, []string{silent}, time.Minute); !w.Isolated() {
		t.Fatalf("expired context: %+v", w)
	}
}

// A dropped SYN costs a second before the kernel resends it: the probe
// asks again itself halfway through its timeout.
func TestProbeWitnessesAsksAgain(t *testing.T) {
	addr, fd := silentListener(t)
	t.Cleanup(func() { syscall.Shutdown(fd, syscall.SHUT_RDWR) }) // ends the Accept below
	// The first SYN is dropped (queue full); then the queue is freed.
	go func() {
		time.Sleep(60 * time.Millisecond)
		for {
			nfd, _, err := syscall.Accept(fd)
			if err != nil {
				return
			}
			syscall.Close(nfd)
		}
	}()
	w := ProbeWitnesses(context.Background(), []string{addr}, 400*time.Millisecond)
	if w.Isolated() {
		t.Fatalf("witness that answers the second SYN counted as unreachable: %+v", w)
	}
}
