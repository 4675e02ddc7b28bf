// Command benchagent compares, in one run on one throwaway MariaDB, the
// installed agentcheck daemon (bin/agentcheck serve, its own process) with
// the pattern it replaces: a clustercheck-style shell script that socat
// forks for every check, running the mysql client each time.
//
// It prints, for each responder: checks per second with N concurrent
// clients (one TCP connection per check, as HAProxy does), latency
// percentiles, and the server-side CPU time per check (the responder's
// process tree plus mysqld). For agentcheck it adds latency at fixed check
// rates (open loop, where latency is not merely queueing behind the other
// clients) and the MySQL polls it caused, counted on the server's own
// Connections and Com_show_slave_status counters. When nginx is installed
// it also measures nginx answering a fixed string: the most checks per
// second this machine manages with one connection per check, so that the
// agentcheck figure can be read against the machine's ceiling.
//
// Figures only; nothing is asserted.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/checkload"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

func main() {
	secs := flag.Int("seconds", 5, "length of each closed-loop run")
	clients := flag.Int("clients", 4, "concurrent clients")
	rates := flag.String("rates", "1000,5000", "fixed check rates (per second) for the open-loop latency runs")
	flag.Parse()
	if err := run(*secs, *clients, *rates); err != nil {
		fmt.Fprintf(os.Stderr, "benchagent: error: %v\n", err)
		os.Exit(1)
	}
}

// row is one measured responder.
type row struct {
	name string
	res  checkload.Result
	// cpu is the responder's CPU time (process tree and mysqld) during
	// the run; zero when not measured.
	cpu time.Duration
}

func run(secs, clients int, rateList string) error {
	if secs < 1 || secs > 600 {
		return fmt.Errorf("-seconds %d out of range 1..600", secs)
	}
	if clients < 1 || clients > 256 {
		return fmt.Errorf("-clients %d out of range 1..256", clients)
	}
	var rates []float64
	for _, f := range strings.Split(rateList, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 || r > 1e6 {
			return fmt.Errorf("-rates: %q is not a rate in 1..1000000", f)
		}
		rates = append(rates, r)
	}
	bin, err := filepath.Abs("bin/agentcheck")
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%q not built: run make build", bin)
	}
	for _, p := range []string{"socat", "mysql"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("the shell baseline needs %s: %w", p, err)
		}
	}
	script, err := filepath.Abs("scripts/clustercheck.sh")
	if err != nil {
		return err
	}
	ctx := context.Background()
	srv, err := mariadbtest.Launch(ctx, mariadbtest.Options{ServerID: 8})
	if err != nil {
		return err
	}
	defer srv.Destroy()
	if err := srv.Exec(ctx, "SET GLOBAL read_only=OFF"); err != nil {
		return err
	}
	mysqldPID := srv.Pid()
	counter, err := srv.RootDB()
	if err != nil {
		return err
	}
	defer counter.Close()
	counter.SetMaxOpenConns(1)

	tmp, err := os.MkdirTemp("", "benchagent")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	stateDir := filepath.Join(tmp, "state")
	if err := state.Dir(stateDir).WriteOutcome(state.Outcome{Event: "MASTER", Phase: state.PhaseDone, Role: state.RoleWriter}); err != nil {
		return err
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	shellAddr, httpAddr, agentAddr, nginxAddr := ports[0], ports[1], ports[2], ports[3]
	cfgPath := filepath.Join(tmp, "vipguard.toml")
	cfg := fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\nuser = \"root\"\n[agent]\nlisten = %q\nhttp_listen = %q\ninterval = \"1s\"\nstale_after = \"3s\"\nmax_conns = 1024\n"+
		// The keepalived track file's own polls (five a second) would be
		// counted with the check cache's: this measures the cache alone.
		"track_file = \"\"\n",
		stateDir, srv.Socket, agentAddr, httpAddr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	const httpReq, httpOK = "GET /primary HTTP/1.0\r\n\r\n", "HTTP/1.1 200"
	dur := time.Duration(secs) * time.Second
	closed := func(addr, req, want string) checkload.Options {
		return checkload.Options{Addr: addr, Request: req, Expect: want, Clients: clients, Duration: dur}
	}
	var rows []row

	// The shell pattern: socat forks the script, which runs mysql.
	socat := exec.Command("socat", "TCP-LISTEN:"+port(shellAddr)+",bind=127.0.0.1,reuseaddr,fork,backlog=256",
		"EXEC:"+script+" "+srv.Socket)
	if err := socat.Start(); err != nil {
		return err
	}
	stopSocat := func() { _ = socat.Process.Kill(); _ = socat.Wait() }
	defer func() {
		if socat.ProcessState == nil {
			stopSocat()
		}
	}()
	if err := waitAnswer(shellAddr, httpReq, httpOK); err != nil {
		return fmt.Errorf("socat/clustercheck.sh: %w", err)
	}
	shellConns0 := status(counter, "Connections")
	shell, err := measure("clustercheck.sh via socat", []int{socat.Process.Pid, mysqldPID}, closed(shellAddr, httpReq, httpOK))
	if err != nil {
		return err
	}
	shellConns := status(counter, "Connections") - shellConns0
	stopSocat()
	rows = append(rows, shell)

	// agentcheck, as installed: its own process, from the config file.
	agent := exec.Command(bin, "-c", cfgPath, "serve")
	agent.Stderr = nil
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() { _ = agent.Process.Signal(syscall.SIGTERM); _ = agent.Wait() }()
	if err := waitAnswer(httpAddr, httpReq, httpOK); err != nil {
		return fmt.Errorf("agentcheck: %w", err)
	}
	c0, q0, t0 := status(counter, "Connections"), status(counter, "Com_show_slave_status"), time.Now()
	procs := []int{agent.Process.Pid, mysqldPID}
	httpRow, err := measure("agentcheck HTTP /primary", procs, closed(httpAddr, httpReq, httpOK))
	if err != nil {
		return err
	}
	agentRow, err := measure("agentcheck agent-check", procs, closed(agentAddr, "writer\n", "up 100%"))
	if err != nil {
		return err
	}
	var open []row
	for _, r := range rates {
		o := closed(agentAddr, "writer\n", "up 100%")
		o.Rate = r
		res, err := measure(fmt.Sprintf("agent-check at %.0f/s", r), procs, o)
		if err != nil {
			return err
		}
		open = append(open, res)
	}
	elapsed := time.Since(t0)
	conns, shows := status(counter, "Connections")-c0, status(counter, "Com_show_slave_status")-q0
	rows = append(rows, httpRow, agentRow)

	var ceiling *row
	var ceilingOpen []row
	if ng, err := exec.LookPath("nginx"); err == nil {
		runs := []checkload.Options{closed(nginxAddr, httpReq, httpOK)}
		for _, r := range rates {
			o := closed(nginxAddr, httpReq, httpOK)
			o.Rate = r
			runs = append(runs, o)
		}
		got, err := nginxRows(ng, tmp, nginxAddr, runs)
		if err != nil {
			return err
		}
		ceiling, ceilingOpen = &got[0], got[1:]
	}

	fmt.Printf("%d concurrent clients, %s per run, one TCP connection per check; %d CPUs\n\n", clients, dur, runtime.NumCPU())
	fmt.Printf("%-30s %9s %10s %10s %10s %10s %12s %7s %7s\n", "responder", "checks/s", "mean", "p50", "p99", "p99.9", "CPU/check", "errors", "missed")
	all := append(append([]row{}, rows...), open...)
	if ceiling != nil {
		all = append(append(all, *ceiling), ceilingOpen...)
	}
	for _, r := range all {
		fmt.Printf("%-30s %9.0f %10s %10s %10s %10s %12s %7d %7d\n", r.name, r.res.PerSecond(), us(r.res.Mean), us(r.res.P50),
			us(r.res.P99), us(r.res.P999), cpuPerCheck(r), r.res.Errors, r.res.Missed)
		if r.res.FirstError != "" {
			fmt.Printf("   first failed check: %s\n", r.res.FirstError)
		}
	}
	fmt.Println()
	if shell.res.Checks > 0 {
		fmt.Printf("agentcheck / shell, checks per second: HTTP %.0fx, agent-check %.0fx\n",
			httpRow.res.PerSecond()/shell.res.PerSecond(), agentRow.res.PerSecond()/shell.res.PerSecond())
	}
	if ceiling != nil && ceiling.res.Checks > 0 {
		fmt.Printf("agentcheck / nginx fixed answer (this machine's ceiling), checks per second: HTTP %.2f, agent-check %.2f; nginx / shell %.0fx\n",
			httpRow.res.PerSecond()/ceiling.res.PerSecond(), agentRow.res.PerSecond()/ceiling.res.PerSecond(),
			ceiling.res.PerSecond()/shell.res.PerSecond())
	} else if ceiling == nil {
		fmt.Println("nginx not installed: no ceiling reference (apt-get install nginx-light)")
	}
	fmt.Printf("MySQL during the shell run: %d connections for %d checks\n", shellConns, shell.res.Checks)
	intervals := elapsed.Seconds() // interval = 1s
	fmt.Printf("MySQL during the agentcheck runs (%.1f s, poll interval 1s, %d checks): %d connections, %d SHOW ALL SLAVES STATUS => %.2f polls per interval\n",
		elapsed.Seconds(), httpRow.res.Checks+agentRow.res.Checks+openChecks(open), conns, shows, float64(shows)/intervals)
	return nil
}

func openChecks(rows []row) int {
	n := 0
	for _, r := range rows {
		n += r.res.Checks
	}
	return n
}

// measure runs one load and the CPU time procs (and their reaped
// children: socat's forks) used meanwhile.
func measure(name string, procs []int, o checkload.Options) (row, error) {
	before := cpuOf(procs)
	res, err := checkload.Run(o)
	if err != nil {
		return row{}, fmt.Errorf("%s: %w", name, err)
	}
	return row{name: name, res: res, cpu: cpuOf(procs) - before}, nil
}

// cpuOf sums user and system time of pids and of their waited-for
// children, from /proc (clock ticks of 10 ms).
func cpuOf(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		// utime, stime, cutime, cstime are fields 14..17 (1-based); f[0] is field 3.
		for _, i := range []int{11, 12, 13, 14} {
			if i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				ticks += v
			}
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func cpuPerCheck(r row) string {
	if r.cpu <= 0 || r.res.Checks == 0 {
		return "-"
	}
	return us(r.cpu / time.Duration(r.res.Checks))
}

func us(d time.Duration) string {
	if d >= 10*time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%dµs", d.Microseconds())
}

// nginxRows measures nginx answering a fixed string, one run per o.
func nginxRows(bin, tmp, addr string, runs []checkload.Options) ([]row, error) {
	dir := filepath.Join(tmp, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_timeout 0;
  client_body_temp_path %[1]s;
  proxy_temp_path %[1]s;
  fastcgi_temp_path %[1]s;
  uwsgi_temp_path %[1]s;
  scgi_temp_path %[1]s;
  server {
    listen %[2]s;
    location / { return 200 '{"check":"writer","status":"up"}\n'; }
  }
}
`, dir, addr)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-p", dir, "-c", path)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := waitAnswer(addr, "GET / HTTP/1.0\r\n\r\n", "HTTP/1.1 200"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return nil, fmt.Errorf("nginx: %w\n%s", err, log)
	}
	var rows []row
	for _, o := range runs {
		name := "nginx fixed answer (ceiling)"
		if o.Rate > 0 {
			name = fmt.Sprintf("nginx at %.0f/s", o.Rate)
		}
		r, err := measure(name, []int{cmd.Process.Pid}, o)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// waitAnswer waits up to 10 s until addr answers req with want.
func waitAnswer(addr, req, want string) error {
	var last checkload.Result
	for range 100 {
		r, err := checkload.Run(checkload.Options{Addr: addr, Request: req, Expect: want, Clients: 1, MaxChecks: 1, Timeout: time.Second})
		if err != nil {
			return err
		}
		if r.Checks == 1 {
			return nil
		}
		last = r
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s does not answer %q: %s", addr, want, last.FirstError)
}

func freePorts(n int) ([]string, error) {
	var out []string
	for len(out) < n {
		p, err := mariadbtest.FreePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		if a := net.JoinHostPort("127.0.0.1", strconv.Itoa(p)); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func status(db *sql.DB, name string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n string
	var v int
	if err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&n, &v); err != nil && !errors.Is(err, sql.ErrNoRows) {
		fmt.Fprintf(os.Stderr, "benchagent: warning: reading %s: %v\n", name, err)
	}
	return v
}
