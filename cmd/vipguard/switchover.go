package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vipguard/vipguard/internal/cli"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/ops"
	"github.com/vipguard/vipguard/internal/probe"
)

type switchoverCmd struct {
	DryRun          bool          `help:"Check and print the plan; change nothing."`
	Timeout         time.Duration `default:"60s" help:"Bound on the wait for the peer's promotion and this node's fence."`
	MaxLag          time.Duration `default:"10s" help:"Refuse when the peer lags more than this."`
	Force           bool          `help:"Go ahead although the peer is unfit, lagging, not replicating, in maintenance or unreadable."`
	KeepMaintenance bool          `help:"Leave maintenance on here afterwards (to work on this node)."`
	ProbeDefaults   string        `name:"probe-defaults-file" type:"path" placeholder:"FILE" help:"MySQL option file with the [client] account of the write probe (an application-like account: INSERT, SELECT, DELETE on the probe table, nothing that writes through read_only). Without it no probe runs."`
	ProbeTable      string        `default:"vipguard.switchover_probe" placeholder:"DB.TABLE" help:"Table the probe writes to through the VIP (see vipguard(8) for its definition)."`
}

func (s *switchoverCmd) run(ctx context.Context, g *cli.Globals, stdout io.Writer) error {
	cfg, err := g.Load()
	if err != nil {
		return err
	}
	o := ops.Options{Timeout: s.Timeout, MaxLag: s.MaxLag, Force: s.Force, DryRun: s.DryRun,
		KeepMaintenance: s.KeepMaintenance, PeerTimeout: 2 * time.Second, Out: stdout,
		SetMaintenance: func(on bool, reason string) error {
			action := "off"
			if on {
				action = "on"
			}
			m := cli.MaintCmd{Action: action, Reason: reason}
			return m.Run(g, &cli.Env{Stdout: io.Discard})
		}}
	if s.ProbeDefaults != "" {
		if o.Probe, err = probeOptions(cfg, s.ProbeDefaults, s.ProbeTable); err != nil {
			return &cli.ConfigError{Err: err}
		}
	}
	rep, err := ops.Switchover(ctx, cfg, o)
	writeReport(stdout, rep, s, o)
	switch {
	case errors.Is(err, ops.ErrRefused):
		return errProblem
	case errors.Is(err, ops.ErrIncomplete):
		return errIncomplete
	case err == nil && s.DryRun:
		return nil
	}
	return err
}

// probeOptions builds the probe's target: the VIP, with the account of
// the option file (no password on the command line).
func probeOptions(cfg *config.Config, file, table string) (*ops.ProbeOptions, error) {
	if cfg.VIP.Address == "" {
		return nil, fmt.Errorf("the write probe needs [vip] address")
	}
	if err := ops.ValidProbeTable(table); err != nil {
		return nil, err
	}
	opt, err := config.ReadOptionFile(file)
	if err != nil {
		return nil, err
	}
	port := opt.Port
	if port == 0 {
		port = cfg.Peer.Port
	}
	return &ops.ProbeOptions{Table: table, Target: probe.Target{Host: cfg.VIP.Address, Port: port,
		User: opt.User, Password: opt.Password, ConnectTimeout: 500 * time.Millisecond, QueryTimeout: time.Second}}, nil
}

func writeReport(w io.Writer, r *ops.Report, s *switchoverCmd, o ops.Options) {
	if r == nil {
		return
	}
	p := cli.Printable
	for _, rf := range r.Refusals {
		tag := "refused"
		if rf.Forceable && s.Force {
			tag = "forced past"
		}
		fmt.Fprintf(w, "%s: %s\n", tag, p(rf.Reason))
	}
	if ops.Blocking(r.Refusals, s.Force) {
		fmt.Fprintf(w, "switchover from %s to %s refused; nothing changed\n", p(r.From), p(r.To))
		return
	}
	if s.DryRun {
		fmt.Fprintf(w, "plan: switch the writer from %s to %s\n", p(r.From), p(r.To))
		fmt.Fprintf(w, "  1. maintenance on here: mysqlcheck says unfit, keepalived moves the VIP, notify fences this node and promotes the peer\n")
		fmt.Fprintf(w, "  2. wait up to %s until the peer is the writer (promotion done) and this node is fenced and replicating from it\n", s.Timeout)
		if s.KeepMaintenance {
			fmt.Fprintf(w, "  3. leave maintenance on here (turned off anyway if the switchover does not complete)\n")
		} else {
			fmt.Fprintf(w, "  3. maintenance off here (also if the switchover does not complete)\n")
		}
		if o.Probe != nil {
			fmt.Fprintf(w, "  probe: a write to %s through %s every %s (at most %d)\n", o.Probe.Table, o.Probe.Target, ops.ProbeEvery, ops.ProbeMaxWrites)
		} else {
			fmt.Fprintf(w, "  probe: none (--probe-defaults-file names its account)\n")
		}
		fmt.Fprintln(w, "dry run: nothing changed")
		return
	}
	if r.Completed {
		fmt.Fprintf(w, "switchover done in %s: %s is the writer, %s a fenced standby replicating from it\n",
			r.Took.Round(time.Millisecond), p(r.To), p(r.From))
		if s.KeepMaintenance {
			fmt.Fprintln(w, "maintenance stays on here: vipguard maint off when done")
		}
	} else {
		fmt.Fprintf(w, "switchover NOT completed after %s\n", r.Took.Round(time.Millisecond))
	}
	if r.Probe != nil {
		fmt.Fprintf(w, "probe: %s\n", p(r.Probe.String()))
		if r.Probe.FirstFailure != "" {
			fmt.Fprintf(w, "probe: first failed write: %s\n", p(r.Probe.FirstFailure))
		}
	}
	fmt.Fprintf(w, "positions: %s gtid=%s; %s gtid=%s (polled %s before)\n", p(r.From), p(orNone(r.LocalGTID)),
		p(r.To), p(orNone(r.PeerGTID)), r.PeerPollAge.Round(time.Millisecond))
	for _, pr := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p(pr))
	}
}
