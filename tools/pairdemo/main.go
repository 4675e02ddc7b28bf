// Command pairdemo starts two throwaway MariaDB servers replicating both ways
// and shows what mysqlcheck (the built bin/mysqlcheck, run exactly as
// keepalived runs it) says about each node as faults are injected: a healthy
// pair, a stopped SQL thread, maintenance mode, a frozen and a crashed
// writer. Everything it starts is removed when it ends.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "pairdemo: error: %v\n", err)
		os.Exit(1)
	}
}

type node struct {
	name string
	srv  *mariadbtest.Server
	cfg  string
}

func run() error {
	bin, err := filepath.Abs("bin/mysqlcheck")
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%q not built: run make build", bin)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("starting two MariaDB servers replicating both ways (GTID, read_only=ON at start)")
	a, b, err := mariadbtest.NewPair(ctx, mariadbtest.PairOptions{})
	if err != nil {
		return err
	}
	defer a.Destroy()
	defer b.Destroy()
	tmp, err := os.MkdirTemp("", "pairdemo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	nodes := []node{{name: "db1", srv: a}, {name: "db2", srv: b}}
	for i := range nodes {
		n := &nodes[i]
		n.cfg = filepath.Join(tmp, n.name+".toml")
		body := fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\nuser = \"root\"\n", filepath.Join(tmp, n.name), n.srv.Socket)
		if err := os.WriteFile(n.cfg, []byte(body), 0o600); err != nil {
			return err
		}
		fmt.Printf("   %s: server_id=%d port=%d socket=%s\n", n.name, n.srv.Opts.ServerID, n.srv.Port, n.srv.Socket)
	}
	check := func() {
		for _, n := range nodes {
			out, code, took := mysqlcheck(bin, n.cfg)
			verdict := "FIT  "
			if code != 0 {
				verdict = fmt.Sprintf("UNFIT (exit %d)", code)
			}
			fmt.Printf("   %s  %-16s %6.1fms  %s\n", n.name, verdict, float64(took.Microseconds())/1000, out)
		}
	}
	must := func(s *mariadbtest.Server, q ...string) error { return s.Exec(ctx, q...) }

	step("db1 becomes the writer (read_only=OFF) and takes a write")
	if err := must(a, "SET GLOBAL read_only=OFF", "CREATE TABLE vgtest.t (id INT PRIMARY KEY)", "INSERT INTO vgtest.t VALUES (1)"); err != nil {
		return err
	}
	if err := b.SyncWith(ctx, a, 10*time.Second); err != nil {
		return err
	}
	check()

	step("STOP SLAVE SQL_THREAD on the standby db2: it must not take the VIP")
	if err := must(b, "STOP SLAVE SQL_THREAD"); err != nil {
		return err
	}
	check()
	if err := must(b, "START SLAVE SQL_THREAD"); err != nil {
		return err
	}
	if err := b.WaitReplicating(ctx, 10*time.Second); err != nil {
		return err
	}

	step("mysqlcheck maint on at the writer db1 (a planned switchover starts)")
	out, _, _ := mysqlcheck(bin, nodes[0].cfg, "maint", "on", "--reason", "demo switchover")
	fmt.Println("   " + out)
	check()
	out, _, _ = mysqlcheck(bin, nodes[0].cfg, "maint", "off")
	fmt.Println("   " + out)

	step("SIGSTOP the writer's mysqld: the check still answers within its deadline")
	if err := a.Freeze(); err != nil {
		return err
	}
	check()
	if err := a.Thaw(); err != nil {
		return err
	}

	step("kill -9 the writer's mysqld: db1 unfit, db2 stays fit to take over")
	a.Kill()
	time.Sleep(time.Second) // let db2's IO thread notice
	check()
	step("done; removing both servers")
	return nil
}

func step(s string) { fmt.Printf("\n== %s\n", s) }

// mysqlcheck runs the binary and returns its one line, exit code and time.
func mysqlcheck(bin, cfg string, args ...string) (string, int, time.Duration) {
	cmd := exec.Command(bin, append([]string{"-c", cfg}, args...)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return err.Error(), -1, took
	}
	return strings.TrimSpace(string(out)), code, took
}
