// Command mysqlcheck tells keepalived whether this node is fit to hold the
// VIP. Run it as a vrrp_script: exit 0 means fit, anything else unfit. It
// always answers within its deadline (check.timeout), also when mysqld is
// frozen, and honours the maintenance flag.
//
// It is also the backstop of the fast path (docs/fast-failover.md): a
// keepalived track file (agent.track_file) that agentcheck has not
// refreshed for agent.track_stale_after is rewritten with this verdict, so
// that a dead agentcheck's last "1" cannot pin the node in FAULT; a file
// that is not root-owned or is writable by others makes the node unfit.
//
// Unfit: mysqld down, frozen or unreadable; a read-only node not
// replicating, with a broken channel, or lagging past check.max_lag;
// notify's last outcome marked this node unfit; maintenance on; none of
// check.witnesses answers (the node is cut off from the network). A
// writable node is the writer and stays fit (a broken reverse channel is a
// warning).
//
// A setup mistake (socket path, credentials, grants) is reported as one,
// naming the key to fix; the node is unfit all the same.
//
// With --nagios it is a Nagios/Icinga plugin following the Monitoring
// Plugins guidelines: one status line on stdout with perfdata, exit 0 OK,
// 1 WARNING, 2 CRITICAL, 3 UNKNOWN (a configuration problem, a usage
// error). Maintenance reads OK, or WARNING with check.nagios_maintenance =
// "warning". "mysqlcheck maint on|off|status" is the maintenance switch.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/cli"
	"github.com/vipguard/vipguard/internal/config"
)

const prog = "mysqlcheck"

// Exit codes in keepalived mode (any non-zero is "unfit" to keepalived).
const (
	exitFit    = 0
	exitUnfit  = 1
	exitConfig = cli.ExitConfig
)

// Exit codes in --nagios mode.
const (
	nagiosOK       = 0
	nagiosWarning  = 1
	nagiosCritical = 2
	nagiosUnknown  = 3
)

// preConfigDeadline bounds reading the configuration itself (a hung
// filesystem must not hang keepalived's check either).
const preConfigDeadline = 2 * time.Second

type cmdline struct {
	cli.Globals
	// The check's flags live at the top so that the top-level help shows
	// them: the check is what a bare "mysqlcheck" runs.
	Timeout time.Duration `help:"Hard deadline for the whole check (overrides check.timeout)."`
	Nagios  bool          `help:"Behave as a Nagios/Icinga plugin: one status line with perfdata on stdout; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also on usage errors)."`
	Quiet   bool          `short:"q" help:"Print nothing when fit."`

	Check checkCmd `cmd:"" default:"withargs" help:"Check whether this node is fit to hold the VIP (the default)."`
	Maint maintCmd `cmd:"" help:"Turn maintenance mode on or off, or show it. On makes this node unfit, so keepalived moves the VIP away."`
}

type checkCmd struct{}

// Run runs the check; it prints its own verdict line.
func (checkCmd) Run(c *cmdline, env *cli.Env) error { return run(env.Ctx, c, env.Stdout, env.Stderr) }

// maintCmd is the shared maintenance switch, which leaves printing its
// error to the command.
type maintCmd struct{ cli.MaintCmd }

func (m *maintCmd) Run(g *cli.Globals, env *cli.Env) error {
	err := m.MaintCmd.Run(g, env)
	if err != nil {
		cli.Errorf(env.Stderr, prog, "%v", err)
	}
	return err
}

// errUnfit carries the verdict out of run when the node is not fit.
type errUnfit struct{ v check.Verdict }

func (e *errUnfit) Error() string { return "unfit: " + e.v.Reason }

// errNagios carries the status run printed in --nagios mode, when not OK.
type errNagios struct{ status check.Status }

func (e *errNagios) Error() string { return e.status.String() }

// errUsage is a command-line usage error.
type errUsage struct{ err error }

func (e *errUsage) Error() string { return e.err.Error() }

// asName is the environment variable through which the vipguard front
// command says it runs mysqlcheck as "vipguard check", so that help and
// usage errors name the command the operator typed.
const asName = "VIPGUARD_AS"

func main() {
	var c cmdline
	name := prog
	if os.Getenv(asName) == "vipguard" {
		name = "vipguard"
	}
	parser := kong.Must(&c, kong.Name(name),
		kong.Description("Tell keepalived whether this MySQL/MariaDB node is fit to hold the VIP."),
		cli.Vars())
	kctx, err := parser.Parse(os.Args[1:])
	if err == nil && kctx.Command() != "check" && (c.Nagios || c.Quiet || c.Timeout != 0) {
		err = errors.New("--nagios, --timeout and --quiet apply to the check only")
	}
	if err != nil {
		// kong's flags are not parsed when parsing failed: look for
		// --nagios by hand, so that the plugin still answers UNKNOWN.
		nagios := nagiosRequested(os.Args[1:])
		reportUsage(nagios, name, err, os.Stdout, os.Stderr)
		os.Exit(exitCode(nagios, &errUsage{err}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	err = cli.Run(kctx, &cli.Env{Ctx: ctx, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, &c.Globals)
	os.Exit(exitCode(c.Nagios, err))
}

// nagiosRequested reports whether args ask for --nagios (before any "--").
func nagiosRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--nagios", "--nagios=true":
			return true
		}
	}
	return false
}

// reportUsage prints a usage error: the plugin's status line on stdout in
// --nagios mode, "name: error: ..." on stderr otherwise.
func reportUsage(nagios bool, name string, err error, stdout, stderr io.Writer) {
	if nagios {
		io.WriteString(stdout, statusLine(check.Unknown, "usage error: "+err.Error(), nil))
		return
	}
	cli.Errorf(stderr, name, "%v", err)
}

// run performs one check and prints its one line. It returns nil when fit
// (in --nagios mode: when OK).
func run(ctx context.Context, c *cmdline, stdout, stderr io.Writer) error {
	start := time.Now()
	backstop := time.AfterFunc(preConfigDeadline, func() {
		os.Exit(giveUp(c.Nagios, stdout, stderr, check.Unknown,
			"reading the configuration took longer than "+preConfigDeadline.String(), nil))
	})
	cfg, err := c.Load()
	backstop.Stop()
	if err != nil {
		if c.Nagios {
			io.WriteString(stdout, statusLine(check.Unknown, err.Error(), nil))
		} else {
			cli.Errorf(stderr, prog, "%v", err)
		}
		return err
	}
	if c.Timeout > 0 {
		cfg.Check.Timeout = config.Duration{Duration: c.Timeout}
	}
	// The context deadline should end the check; this timer ends the process
	// if anything (a driver, a syscall) ever ignores it.
	backstop = time.AfterFunc(cfg.Check.Timeout.Duration+100*time.Millisecond, func() {
		os.Exit(giveUp(c.Nagios, stdout, stderr, check.Critical,
			fmt.Sprintf("no verdict within %s", cfg.Check.Timeout.Duration), perfdata(cfg.Check, time.Since(start), nil)))
	})
	defer backstop.Stop()

	v := check.Run(ctx, cfg)
	if !c.Nagios {
		// keepalived's run (and "vipguard check"): the backstop of the
		// track file agentcheck keeps (docs/fast-failover.md).
		v = check.ReconcileTrack(cfg, v, time.Now())
	}
	backstop.Stop()
	if c.Nagios {
		if st := printNagios(stdout, cfg.Check, v); st != check.OK {
			return &errNagios{st}
		}
		return nil
	}
	if !v.Fit {
		fmt.Fprintf(stderr, "%s: unfit: %s\n", prog, cli.Printable(v.Reason))
		return &errUnfit{v}
	}
	if !c.Quiet {
		fmt.Fprintf(stdout, "%s: fit: %s\n", prog, cli.Printable(v.Reason))
	}
	return nil
}

// giveUp is the backstop: it reports the node unfit (in --nagios mode, the
// status line with st) and returns the exit code.
func giveUp(nagios bool, stdout, stderr io.Writer, st check.Status, why string, perf []perfdatum) int {
	if nagios {
		io.WriteString(stdout, statusLine(st, why, perf))
		return exitCode(true, &errNagios{st})
	}
	fmt.Fprintf(stderr, "%s: unfit: %s\n", prog, why)
	return exitCode(false, &errUnfit{})
}

// exitCode is the one place that maps run's result to the process status.
func exitCode(nagios bool, err error) int {
	var st *errNagios
	var cfgErr *cli.ConfigError
	var usage *errUsage
	switch {
	case err == nil:
		return exitFit
	case nagios && errors.As(err, &st):
		return [...]int{nagiosOK, nagiosWarning, nagiosCritical, nagiosUnknown}[st.status]
	case nagios:
		return nagiosUnknown // configuration and usage errors
	case errors.As(err, &usage):
		return cli.ExitUsage
	case errors.As(err, &cfgErr):
		return exitConfig
	}
	return exitUnfit
}
