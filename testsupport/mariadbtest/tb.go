package mariadbtest

import (
	"context"
	"os"
)

// TB is the part of testing.TB the helpers use (kept as an interface so the
// lab and demo binaries do not link the testing package).
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
}

// RequireEnv is set (to 1) by `make test` and CI: a missing server is then a
// failure, never a skip.
const RequireEnv = "VIPGUARD_REQUIRE_SERVERS"

// Need skips the test when no server can be started, unless RequireEnv is
// set, in which case it fails it.
func Need(t TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("%v (and %s is set)", err, RequireEnv)
		}
		t.Skipf("%v", err)
	}
}

// Start launches a server for the test and removes it when the test ends.
func Start(t TB, o Options) *Server {
	t.Helper()
	Need(t)
	s, err := Launch(context.Background(), o)
	if err != nil {
		t.Fatalf("starting mariadbd: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server %d error log:\n%s", s.Opts.ServerID, s.ErrorLog(15))
		}
		s.Destroy()
	})
	return s
}

// Pair starts a two-way replicating pair for the test.
func Pair(t TB, po PairOptions) (a, b *Server) {
	t.Helper()
	Need(t)
	a, b, err := NewPair(context.Background(), po)
	if err != nil {
		t.Fatalf("starting replication pair: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server %d error log:\n%s\nserver %d error log:\n%s",
				a.Opts.ServerID, a.ErrorLog(15), b.Opts.ServerID, b.ErrorLog(15))
		}
		a.Destroy()
		b.Destroy()
	})
	return a, b
}
