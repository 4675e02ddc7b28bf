// Command agentcheck tells HAProxy which node of the pair takes writes and
// which takes reads, answering HAProxy's agent-check (one line per check)
// and HTTP health checks (option httpchk) from a state it polls from MySQL
// once per interval.
//
//	agentcheck serve               the daemon (systemd Type=notify, socket activation)
//	agentcheck inetd               one check on stdin/stdout (xinetd, Accept=yes)
//	agentcheck maint on|off|status the local maintenance switch
//	agentcheck status              what it would answer now, and why
//
// The daemon logs with slog (key=value) on stderr, which journald keeps.
// Exit codes: 0 ok; 1 failed (cannot listen, bad request in inetd mode);
// 2 configuration error; 80 command-line usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/internal/agent"
	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/cli"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/nodestatus"
	"github.com/vipguard/vipguard/internal/systemd"
)

const prog = "agentcheck"

// shutdownBound is how long SIGTERM waits for checks being answered; each
// is bounded by io_timeout anyway.
const shutdownBound = 3 * time.Second

type cmdline struct {
	cli.Globals
	Serve  serveCmd     `cmd:"" help:"Run the daemon: answer HAProxy agent-checks and HTTP checks from a cached poll."`
	Inetd  inetdCmd     `cmd:"" help:"Answer one check on stdin/stdout (xinetd, inetd, systemd Accept=yes)."`
	Maint  cli.MaintCmd `cmd:"" help:"Turn maintenance mode on or off, or show it. On drains this node in HAProxy."`
	Status statusCmd    `cmd:"" help:"Show what agentcheck would answer now, and why."`
}

type serveCmd struct{}
type inetdCmd struct{}
type statusCmd struct{}

func main() {
	var c cmdline
	kctx := cli.Parse(&c, prog, "Answer HAProxy's agent-check and HTTP health checks for this MySQL/MariaDB node.")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cli.Run(kctx, &cli.Env{Ctx: ctx, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, &c.Globals)
	if err != nil {
		cli.Errorf(os.Stderr, prog, "%v", err)
	}
	stop()
	os.Exit(exitCode(err))
}

// exitCode is the one place mapping run's result to the process status.
func exitCode(err error) int { return cli.ExitCode(err) }

func (serveCmd) Run(g *cli.Globals, env *cli.Env) error { return serve(env.Ctx, g, env.Stderr) }
func (inetdCmd) Run(g *cli.Globals, env *cli.Env) error {
	return inetd(env.Ctx, g, env.Stdin, env.Stdout)
}
func (statusCmd) Run(g *cli.Globals, env *cli.Env) error { return status(env.Ctx, g, env.Stdout) }

func serve(ctx context.Context, g *cli.Globals, stderr io.Writer) error {
	cfg, err := g.Load()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	srv := agent.NewServer(cfg, log)
	ls, err := listeners(cfg, log)
	if err != nil {
		return err
	}
	// One poll before answering anything: a restart must not answer "down"
	// (no state yet) and make HAProxy shut down the sessions of a healthy
	// node. Checks wait in the listen backlog meanwhile (at most one poll
	// timeout).
	if st := srv.Poller.PollOnce(ctx); st.Err != nil {
		log.Warn("first poll failed", "err", st.Err)
	}
	pctx, stopPoll := context.WithCancel(context.Background())
	pollDone := make(chan struct{})
	go func() { defer close(pollDone); srv.Poller.Run(pctx) }()
	// keepalived's track file (docs/fast-failover.md). It stops with the
	// poller and is left as it is: mysqlcheck takes over a stale file.
	trackDone := make(chan struct{})
	go func() { defer close(trackDone); srv.Tracker.Run(pctx) }()
	// The proxies that agent-check this node become its witnesses.
	go srv.Learn(ctx)

	serveDone := make(chan struct{}, len(ls))
	for _, l := range ls {
		go func() {
			if err := srv.Serve(ctx, l); err != nil {
				log.Error("serving stopped", "addr", l.Addr().String(), "err", err)
			}
			serveDone <- struct{}{}
		}()
	}
	if err := systemd.Ready(); err != nil {
		log.Warn("sd_notify READY failed", "err", err)
	}
	log.Info("agentcheck ready", "version", cli.VersionString(), "config", cfg.Path(),
		"interval", cfg.Agent.Interval.Duration, "stale_after", cfg.Agent.StaleAfter.Duration,
		"track_file", cfg.Agent.TrackFile, "track_interval", cfg.Agent.TrackInterval.Duration,
		"unresponsive_after", cfg.Agent.UnresponsiveAfter.Duration)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var wd <-chan time.Time
	iv := systemd.WatchdogInterval()
	if iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		wd = t.C
		log.Info("watchdog enabled", "ping_every", iv)
	}
	for {
		select {
		case <-hup:
			reload(g, srv, log)
		case <-wd:
			// Ping only while checks are answered and the poll loop
			// turns (the liveness answer asks both): a wedged responder
			// must let systemd restart us, not be kept alive.
			if err := srv.Answering(iv / 2); err != nil {
				log.Error("not answering checks; not pinging the watchdog", "err", err)
			} else {
				_ = systemd.Watchdog()
			}
		case <-ctx.Done():
			_ = systemd.Stopping()
			log.Info("stopping")
			// Bounded: an accept loop wedged in a system call must not
			// keep a stopping process alive.
			bound := time.After(shutdownBound)
		wait:
			for range ls {
				select {
				case <-serveDone:
				case <-bound:
					log.Error("an accept loop did not stop; exiting anyway")
					break wait
				}
			}
			srv.Shutdown(shutdownBound)
			stopPoll()
			<-pollDone
			<-trackDone
			return nil
		}
	}
}

func reload(g *cli.Globals, srv *agent.Server, log *slog.Logger) {
	_ = systemd.Reloading()
	defer systemd.Ready()
	cfg, err := g.Load()
	if err != nil {
		log.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	old := srv.Config()
	if cfg.Agent.Listen != old.Agent.Listen || cfg.Agent.HTTPListen != old.Agent.HTTPListen || cfg.Agent.MaxConns != old.Agent.MaxConns {
		log.Warn("listen addresses and max_conns change only on restart")
	}
	srv.SetConfig(cfg)
	log.Info("configuration reloaded", "config", cfg.Path())
}

// listeners returns the sockets systemd passed, or else our own. Every
// socket serves both protocols: the first request line tells an HTTP
// check from an agent check.
func listeners(cfg *config.Config, log *slog.Logger) ([]net.Listener, error) {
	_, passed, err := systemd.Listeners()
	if err != nil {
		return nil, err
	}
	if len(passed) > 0 {
		for _, l := range passed {
			log.Info("using socket from systemd", "addr", l.Addr().String())
		}
		return passed, nil
	}
	var ls []net.Listener
	for _, addr := range []string{cfg.Agent.Listen, cfg.Agent.HTTPListen} {
		if addr == "" {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, fmt.Errorf("cannot listen: %w", err)
		}
		log.Info("listening", "addr", l.Addr().String())
		ls = append(ls, l)
	}
	if len(ls) == 0 {
		return nil, &cli.ConfigError{Err: errors.New("agent.listen and agent.http_listen are both empty and systemd passed no socket")}
	}
	return ls, nil
}

func inetd(ctx context.Context, g *cli.Globals, stdin io.Reader, stdout io.Writer) error {
	cfg, err := g.Load()
	if err != nil {
		return err
	}
	// stdin may not support deadlines (a pipe from xinetd): this timer
	// ends a silent or slow client for certain.
	limit := cfg.Agent.IOTimeout.Duration + cfg.Check.Timeout.Duration
	backstop := time.AfterFunc(limit, func() { os.Exit(cli.ExitFailed) })
	defer backstop.Stop()
	if f, ok := stdin.(*os.File); ok {
		_ = f.SetReadDeadline(time.Now().Add(cfg.Agent.IOTimeout.Duration))
	}
	srv := agent.NewServer(cfg, slog.New(slog.DiscardHandler))
	if err := srv.ServeStream(ctx, stdin, stdout); err != nil {
		return fmt.Errorf("no check answered: %w", err)
	}
	return nil
}

func status(ctx context.Context, g *cli.Globals, stdout io.Writer) error {
	cfg, err := g.Load()
	if err != nil {
		return err
	}
	srv := agent.NewServer(cfg, slog.New(slog.DiscardHandler))
	st := srv.Poller.PollOnce(ctx)
	in := srv.Input(time.Now())
	fmt.Fprintf(stdout, "config:      %s\n", orDefault(cfg.Path()))
	// What comes from state_dir or the server is escaped: it reaches a
	// terminal (see cli.Printable).
	p := cli.Printable
	fmt.Fprintf(stdout, "%s\n", cli.DescribeMaintenance(in.Maintenance))
	if in.MaintErr != nil {
		fmt.Fprintf(stdout, "             %s\n", p(in.MaintErr.Error()))
	}
	if in.OutcomeErr != nil {
		fmt.Fprintf(stdout, "notify:      unreadable outcome: %s\n", p(in.OutcomeErr.Error()))
	} else if o := in.Outcome; o != nil {
		fmt.Fprintf(stdout, "notify:      %s %s, role %s, unfit=%v %s\n", p(o.Event), p(string(o.Phase)), p(string(o.Role)), o.Unfit, p(o.Reason))
	} else {
		fmt.Fprintf(stdout, "notify:      no outcome recorded on this node\n")
	}
	fmt.Fprintf(stdout, "witnesses:   %s\n", p(nodestatus.DescribeWitnessSet(check.Witnesses(cfg))))
	fmt.Fprintf(stdout, "track file:  %s\n", p(describeTrack(cfg, time.Now())))
	if st.Err != nil {
		fmt.Fprintf(stdout, "mysql:       poll failed after %s: %s\n", st.Took.Round(time.Millisecond), p(st.Err.Error()))
	} else if s := st.Snapshot; s != nil {
		fmt.Fprintf(stdout, "mysql:       %s server_id=%d read_only=%v, %d replication channel(s), polled in %s\n",
			p(s.Version.String()), s.ServerID, s.ReadOnly, len(s.Replicas), st.Took.Round(time.Millisecond))
	}
	fmt.Fprintln(stdout)
	pol := srv.Policy()
	for _, c := range []struct {
		role  agent.Role
		agent string
		http  string
	}{
		{agent.RoleWriter, "writer", "/primary"},
		{agent.RoleReader, "reader", "/replica"},
		{agent.RoleReadOnly, "read-only", "/read-only"},
		{agent.RoleHealth, "health", "/health"},
	} {
		a := agent.Decide(pol, c.role, in, 0)
		fmt.Fprintf(stdout, "%-10s agent %-9s http %-10s %d  %s\n", c.agent, trimLine(a), c.http, a.HTTPStatus(), p(a.Reason))
	}
	return nil
}

// trimLine is the agent reply without its description.
func trimLine(a agent.Answer) string {
	line := a.AgentLine()
	for i := range line {
		if line[i] == '#' || line[i] == '\n' {
			line = line[:i]
			break
		}
	}
	return fmt.Sprintf("%q", trimSpace(line))
}

func trimSpace(s string) string {
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}

func orDefault(p string) string {
	if p == "" {
		return "(built-in defaults)"
	}
	return p
}

// describeTrack says what keepalived's track file holds, and whether
// mysqlcheck would still believe it.
func describeTrack(cfg *config.Config, now time.Time) string {
	path := cfg.Agent.TrackFile
	if path == "" {
		return "off (agent.track_file = \"\"): keepalived has mysqlcheck only"
	}
	f, err := check.ReadTrack(path)
	switch {
	case err != nil:
		return err.Error()
	case f == nil:
		return fmt.Sprintf("%s: none yet (keepalived reads that as 0)", path)
	case f.BadContent != nil:
		return fmt.Sprintf("%s: %v", path, f.BadContent)
	}
	value, stale := "0 (fit)", ""
	if f.Unfit {
		value = "1 (unfit: keepalived holds the instance in FAULT)"
	}
	age := now.Sub(f.ModTime).Round(time.Millisecond)
	if age > cfg.Agent.TrackStaleAfter.Duration {
		stale = ", stale: mysqlcheck rewrites it"
	}
	return fmt.Sprintf("%s says %s, written by %s %s ago%s: %s", path, value, f.Writer, age, stale, f.Reason)
}
