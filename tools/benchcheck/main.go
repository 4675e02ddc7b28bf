// Command benchcheck compares, in one run on one throwaway MariaDB replica,
// the cost of bin/mysqlcheck (the whole evaluation: maintenance flag,
// notify outcome, read_only, replication channels, lag) with the naive
// keepalived check it replaces: a shell script running `mysql -e 'select 1'`.
// It prints wall time and peak RSS of each (the process tree, as keepalived
// pays for it) and their ratio. Figures only; nothing is asserted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

const naiveScript = `#!/bin/sh
# The check vipguard replaces, as found in many keepalived setups.
mysql --socket="$1" -N -e 'select 1' >/dev/null 2>&1 || exit 1
exit 0
`

type stats struct {
	name        string
	wall        []time.Duration
	maxRSSKiB   int64
	failures    int
	lastFailure string
}

func main() {
	runs := flag.Int("runs", 200, "invocations of each check")
	flag.Parse()
	if err := run(*runs); err != nil {
		fmt.Fprintf(os.Stderr, "benchcheck: error: %v\n", err)
		os.Exit(1)
	}
}

func run(runs int) error {
	if runs < 1 || runs > 100000 {
		return fmt.Errorf("-runs %d out of range 1..100000", runs)
	}
	bin, err := filepath.Abs("bin/mysqlcheck")
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%q not built: run make build", bin)
	}
	ctx := context.Background()
	// A replica is the expensive case: mysqlcheck reads its channels too.
	a, b, err := mariadbtest.NewPair(ctx, mariadbtest.PairOptions{})
	if err != nil {
		return err
	}
	defer a.Destroy()
	defer b.Destroy()
	if err := a.Exec(ctx, "SET GLOBAL read_only=OFF"); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "benchcheck")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	script := filepath.Join(tmp, "naive-check.sh")
	cfg := filepath.Join(tmp, "vipguard.toml")
	if err := os.WriteFile(script, []byte(naiveScript), 0o755); err != nil {
		return err
	}
	body := fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\nuser = \"root\"\n", tmp, b.Socket)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		return err
	}
	naive := &stats{name: "naive shell check (mysql -e 'select 1')"}
	ours := &stats{name: "mysqlcheck (full evaluation)"}
	// Interleaved so that both see the same machine load.
	for i := 0; i < runs; i++ {
		measure(naive, "/bin/sh", script, b.Socket)
		measure(ours, bin, "-c", cfg, "-q")
	}
	fmt.Printf("checks against a replica of a two-way MariaDB pair, %d runs each, interleaved\n\n", runs)
	fmt.Printf("%-42s %9s %9s %9s %11s %9s\n", "check", "mean", "p50", "p99", "peak RSS", "failures")
	for _, s := range []*stats{naive, ours} {
		fmt.Printf("%-42s %9s %9s %9s %8.1fMiB %9d\n", s.name, ms(mean(s.wall)), ms(pct(s.wall, 50)), ms(pct(s.wall, 99)),
			float64(s.maxRSSKiB)/1024, s.failures)
		if s.lastFailure != "" {
			fmt.Printf("   last failure: %s\n", s.lastFailure)
		}
	}
	fmt.Printf("\nmysqlcheck / naive: wall (mean) %.2fx, peak RSS %.2fx  (below 1.00 = cheaper)\n",
		float64(mean(ours.wall))/float64(mean(naive.wall)), float64(ours.maxRSSKiB)/float64(naive.maxRSSKiB))
	return nil
}

// measure runs one check; peak RSS comes from wait4's rusage, which covers
// the waited-for children too (the mysql client under the shell).
func measure(s *stats, argv ...string) {
	cmd := exec.Command(argv[0], argv[1:]...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	s.wall = append(s.wall, time.Since(start))
	if err != nil {
		s.failures++
		s.lastFailure = fmt.Sprintf("%v: %s", err, out)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > s.maxRSSKiB {
		s.maxRSSKiB = ru.Maxrss
	}
}

func mean(d []time.Duration) time.Duration {
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return sum / time.Duration(len(d))
}

func pct(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }
