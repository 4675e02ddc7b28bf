package agent

import (
	"context"
	"net"
	"testing"
)

// BenchmarkAgentCheck measures one agent-check round trip (connect, ask,
// read, close) against the daemon's cached state.
func BenchmarkAgentCheck(b *testing.B) {
	cfg := benchConfig(b)
	srv := NewServer(cfg, discardLog())
	srv.Poller.PollOnce(context.Background())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx, l)
	addr := l.Addr().String()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := tryAsk(addr, "writer\n"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAnswer measures deciding and rendering one answer from the
// cached state, as the fast path does for every check (no network).
func BenchmarkAnswer(b *testing.B) {
	srv := NewServer(benchConfig(b), discardLog())
	srv.Poller.PollOnce(context.Background())
	for _, raw := range []string{"writer\n", "GET /primary HTTP/1.0\r\n\r\n"} {
		name := "agent"
		if raw[0] == 'G' {
			name = "http"
		}
		b.Run(name, func(b *testing.B) {
			fc := newFastConn()
			b.ReportAllocs()
			for b.Loop() {
				fc.in.b = []byte(raw)
				fc.br.Reset(&fc.in)
				req, err := ReadRequest(fc.br)
				if err != nil {
					b.Fatal(err)
				}
				if len(srv.appendResponse(&fc.rb, req)) == 0 {
					b.Fatal("empty answer")
				}
			}
		})
	}
}
