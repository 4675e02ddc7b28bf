package fence

import (
	"context"
	"os/exec"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// BenchmarkPeerGreetingSaturated measures what notify.peer_connect_timeout
// must allow: TCP connect, the server's greeting, login and one query to a
// live mariadbd, while every core is kept busy by twice as many spinning
// processes as there are cores. Each b.N is one connection; p50, p99 and
// the worst are reported. A frozen mysqld never greets at all.
func BenchmarkPeerGreetingSaturated(b *testing.B) {
	s := mariadbtest.Start(b, mariadbtest.Options{})
	ctx := context.Background()
	if err := s.Exec(ctx, "CREATE USER 'bench'@'%' IDENTIFIED BY 'bench'"); err != nil {
		b.Fatal(err)
	}
	for range 2 * runtime.NumCPU() {
		// Bounded: its whole process group is killed when the benchmark
		// ends, and timeout(1) ends it after 5 minutes at the latest.
		spin := exec.Command("timeout", "300", "sh", "-c", "while :; do :; done")
		spin.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := spin.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			syscall.Kill(-spin.Process.Pid, syscall.SIGKILL)
			spin.Wait()
		})
	}
	t := probe.Target{Host: s.Host, Port: s.Port, User: "bench", Password: "bench",
		ConnectTimeout: 5 * time.Second, QueryTimeout: 5 * time.Second}
	var took []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		db, err := probe.Open(t)
		if err != nil {
			b.Fatal(err)
		}
		c, err := db.Conn(ctx)
		if err == nil {
			_, _, err = (&probe.Prober{Q: c, QueryTimeout: 5 * time.Second}).Version(ctx)
			c.Close()
		}
		db.Close()
		if err != nil {
			b.Fatal(err)
		}
		took = append(took, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(took)
	q := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")
}
