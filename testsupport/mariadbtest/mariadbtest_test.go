package mariadbtest

import (
	"context"
	"net"
	"testing"
)

// A port taken between FreePort and mariadbd's bind (a parallel test got
// it) must cost a retry on another port, not a failed test.
func TestLaunchRetriesTakenPort(t *testing.T) {
	Need(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPort = func(addr string) (int, error) {
		calls++
		if calls == 1 {
			return taken, nil
		}
		return FreePort(addr)
	}
	defer func() { pickPort = FreePort }()
	s, err := Launch(context.Background(), Options{ServerID: 7})
	if err != nil {
		t.Fatalf("launch with a taken first port: %v", err)
	}
	defer s.Destroy()
	if calls < 2 || s.Port == taken {
		t.Fatalf("port %d after %d picks; want a new port after the taken %d", s.Port, calls, taken)
	}
	if _, err := s.Query(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("server on the retried port: %v", err)
	}
}

// An explicitly chosen port that is taken is the caller's error: no retry.
func TestLaunchExplicitTakenPortFails(t *testing.T) {
	Need(t)
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	s, err := Launch(context.Background(), Options{ServerID: 8, Port: held.Addr().(*net.TCPAddr).Port})
	if err == nil {
		s.Destroy()
		t.Fatal("launch on a taken explicit port succeeded")
	}
}
