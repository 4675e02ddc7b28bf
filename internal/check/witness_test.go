package check

import (
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/testsupport/nettest"
)

func TestProbeWitnesses(t *testing.T) {
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	silent, _ := nettest.Silent(t)
	refused := nettest.Refusing(t)
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
	addr, fd := nettest.Silent(t)
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
