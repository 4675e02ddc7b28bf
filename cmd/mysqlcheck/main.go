// Command mysqlcheck tells keepalived whether this node is fit to hold the
// VIP. Run it as a vrrp_script: exit 0 means fit, anything else unfit. It
// always answers within its deadline (check.timeout), also when mysqld is
// frozen, and honours the maintenance flag.
//
// Unfit: mysqld down, frozen or unreadable; a read-only node not
// replicating, with a broken channel, or lagging past check.max_lag;
// notify's last outcome marked this node unfit; maintenance on; none of
// check.witnesses answers (the node is cut off from the network). A
// writable node is the writer and stays fit (a broken reverse channel is a
// warning).
//
// With --nagios it is a Nagios/Icinga plugin (0 OK, 1 WARNING, 2 CRITICAL,
// 3 UNKNOWN, with perfdata). "mysqlcheck maint on|off|status" is the
// maintenance switch.
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
	Check checkCmd     `cmd:"" default:"withargs" help:"Check whether this node is fit to hold the VIP (the default)."`
	Maint cli.MaintCmd `cmd:"" help:"Turn maintenance mode on or off, or show it. On makes this node unfit, so keepalived moves the VIP away."`
}

type checkCmd struct {
	Timeout time.Duration `help:"Hard deadline for the whole check (overrides check.timeout)."`
	Nagios  bool          `help:"Behave as a Nagios/Icinga plugin: exit 0/1/2/3 and print perfdata."`
	Quiet   bool          `short:"q" help:"Print nothing when fit."`
}

// errUnfit carries the verdict out of run when the node is not fit.
type errUnfit struct{ v check.Verdict }

func (e *errUnfit) Error() string { return "unfit: " + e.v.Reason }

func main() {
	var c cmdline
	command := cli.Parse(&c, prog, "Tell keepalived whether this MySQL/MariaDB node is fit to hold the VIP.")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var code int
	switch command {
	case "maint <action>":
		err := c.Maint.Run(&c.Globals, os.Stdout)
		if err != nil {
			cli.Errorf(os.Stderr, prog, "%v", err)
		}
		code = cli.ExitCode(err)
	default:
		code = exitCode(c.Check.Nagios, run(ctx, &c.Globals, &c.Check, os.Stdout, os.Stderr))
	}
	os.Exit(code)
}

// run performs one check and prints its one line. It returns nil when fit.
func run(ctx context.Context, g *cli.Globals, cmd *checkCmd, stdout, stderr io.Writer) error {
	backstop := time.AfterFunc(preConfigDeadline, func() {
		giveUp(cmd.Nagios, stderr, "reading the configuration took longer than "+preConfigDeadline.String())
	})
	cfg, err := g.Load()
	backstop.Stop()
	if err != nil {
		if cmd.Nagios {
			fmt.Fprintf(stdout, "VIPGUARD UNKNOWN - %v\n", err)
		} else {
			cli.Errorf(stderr, prog, "%v", err)
		}
		return err
	}
	if cmd.Timeout > 0 {
		cfg.Check.Timeout = config.Duration{Duration: cmd.Timeout}
	}
	// The context deadline should end the check; this timer ends the process
	// if anything (a driver, a syscall) ever ignores it.
	backstop = time.AfterFunc(cfg.Check.Timeout.Duration+100*time.Millisecond, func() {
		giveUp(cmd.Nagios, stderr, fmt.Sprintf("no verdict within %s", cfg.Check.Timeout.Duration))
	})
	defer backstop.Stop()

	v := check.Run(ctx, cfg)
	backstop.Stop()
	if cmd.Nagios {
		printNagios(stdout, cfg, v)
	} else if !v.Fit {
		fmt.Fprintf(stderr, "%s: unfit: %s\n", prog, v.Reason)
	} else if !cmd.Quiet {
		fmt.Fprintf(stdout, "%s: fit: %s\n", prog, v.Reason)
	}
	if !v.Fit || (cmd.Nagios && v.Status != check.OK) {
		return &errUnfit{v}
	}
	return nil
}

// giveUp is the backstop: report unfit and leave at once.
func giveUp(nagios bool, w io.Writer, why string) {
	if nagios {
		fmt.Fprintf(w, "VIPGUARD CRITICAL - %s\n", why)
		os.Exit(nagiosCritical)
	}
	fmt.Fprintf(w, "%s: unfit: %s\n", prog, why)
	os.Exit(exitUnfit)
}

func printNagios(w io.Writer, cfg *config.Config, v check.Verdict) {
	perf := fmt.Sprintf("time=%.6fs;;%.3f", v.Took.Seconds(), cfg.Check.Timeout.Seconds())
	if v.Lag != nil {
		perf = fmt.Sprintf("lag=%.3fs;%.3f;%.3f;0 %s", v.Lag.Seconds(),
			cfg.Check.WarnLag.Seconds(), cfg.Check.MaxLag.Seconds(), perf)
	}
	fmt.Fprintf(w, "VIPGUARD %s - %s | %s\n", v.Status, v.Reason, perf)
}

// exitCode is the one place that maps run's result to the process status.
func exitCode(nagios bool, err error) int {
	var unfit *errUnfit
	var cfgErr *cli.ConfigError
	switch {
	case err == nil:
		return exitFit
	case nagios && errors.As(err, &unfit):
		return [...]int{nagiosOK, nagiosWarning, nagiosCritical, nagiosUnknown}[unfit.v.Status]
	case nagios:
		return nagiosUnknown
	case errors.As(err, &cfgErr):
		return exitConfig
	}
	return exitUnfit
}
