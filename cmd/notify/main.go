// Command notify makes a keepalived VIP move safe for a MySQL/MariaDB
// active/passive pair. keepalived runs it on every state change:
//
//	notify "/usr/libexec/vipguard/notify -c /etc/vipguard/vipguard.toml"
//
// and appends INSTANCE|GROUP NAME STATE PRIORITY. BACKUP, FAULT, STOP and
// DELETED fence this node (writes stopped, client threads killed, final
// position recorded, stale VIP clients reset, replication verified); MASTER
// fences the peer, waits until this node has caught up, and opens writes
// (see internal/fence). "notify fifo PATH" reads keepalived's notify_fifo
// instead, in order. Every step is logged with its duration on stderr, or
// to syslog when stderr is /dev/null (as keepalived runs scripts); the
// outcome is written to state_dir.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/internal/cli"
	"github.com/vipguard/vipguard/internal/fence"
	"github.com/vipguard/vipguard/internal/safefile"
	"github.com/vipguard/vipguard/internal/tcpreset"
)

const prog = "notify"

// Exit codes. keepalived ignores them; they are for operators, tests and
// wrappers.
const (
	exitOK          = cli.ExitOK
	exitFailed      = cli.ExitFailed // fence or promotion failed
	exitConfig      = cli.ExitConfig // configuration could not be loaded
	exitRefused     = 3              // promotion refused: gate not met (reliability first) or maintenance; node read-only
	exitSuperseded  = 4              // a newer event (or the peer's fence) took over; node not opened
	exitInterrupted = 5              // a signal stopped a promotion; node left read-only
	exitUsage       = cli.ExitUsage
)

type cmdline struct {
	cli.Globals
	DryRun  bool     `help:"Print the plan and every SQL statement it would run; change nothing."`
	Verbose bool     `short:"v" help:"Also log every SQL statement."`
	Event   eventCmd `cmd:"" default:"withargs" help:"Handle one keepalived event (the default): INSTANCE|GROUP NAME STATE PRIORITY."`
	FIFO    fifoCmd  `cmd:"" name:"fifo" help:"Read keepalived's notify_fifo (notify_fifo_script appends the FIFO path)."`
	Reset   resetCmd `cmd:"" name:"reset-clients" hidden:"" help:"Reset the stale TCP clients of VIP (run detached by a fence)."`
}

type resetCmd struct {
	VIP string `arg:"" name:"vip" help:"The VIP that left this node."`
}

type eventCmd struct {
	Args []string `arg:"" name:"event" help:"INSTANCE|GROUP NAME STATE [PRIORITY], as keepalived passes them."`
}

type fifoCmd struct {
	Path string `arg:"" name:"fifo" help:"The FIFO keepalived writes events to."`
}

func main() {
	var c cmdline
	kctx := cli.Parse(&c, prog, "Fence or promote this MySQL/MariaDB node on a keepalived state change.")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cli.Run(kctx, &cli.Env{Ctx: ctx, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, &c.Globals)
	if err != nil && !errors.Is(err, fence.ErrSuperseded) {
		cli.Errorf(os.Stderr, prog, "%v", err)
	}
	os.Exit(exitCode(err))
}

// engine loads the configuration and sets up the fence engine and its log.
func (c *cmdline) engine(env *cli.Env) (*fence.Engine, error) {
	cfg, err := c.Load()
	if err != nil {
		return nil, err
	}
	level := slog.LevelInfo
	if c.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(logDestination(env.Stderr), &slog.HandlerOptions{Level: level})).With("prog", prog)
	return &fence.Engine{Cfg: cfg, Log: log, DryRun: c.DryRun, Plan: env.Stdout, ResetClients: resetDetached(c.Config, env.Stderr), CutClients: tcpreset.CloseAccepted}, nil
}

// Run handles one event given on the command line.
func (e *eventCmd) Run(c *cmdline, env *cli.Env) error {
	eng, err := c.engine(env)
	if err != nil {
		return err
	}
	ev, err := fence.ParseArgs(e.Args)
	if err != nil {
		return &usageError{err}
	}
	return handleOne(env.Ctx, eng, ev)
}

// Run handles the events keepalived writes to its notify FIFO.
func (f *fifoCmd) Run(c *cmdline, env *cli.Env) error {
	eng, err := c.engine(env)
	if err != nil {
		return err
	}
	return runFIFO(env.Ctx, eng, f.Path)
}

// Run resets the stale clients of a VIP that left this node.
func (r *resetCmd) Run(c *cmdline, env *cli.Env) error {
	eng, err := c.engine(env)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(env.Ctx, resetBudget)
	defer cancel()
	return tcpreset.Reset(ctx, r.VIP, eng.Log)
}

// resetBudget bounds a detached reset-clients run: segments are re-sent for
// about 3 s (see tcpreset.Reset), then the local sockets are closed.
const resetBudget = 4 * time.Second

// resetDetached returns the fence's client-reset step: it starts
// "notify reset-clients VIP" in a session of its own and returns at once.
// The resets must go on after the VIP has reached the new holder, which may
// be after keepalived SIGKILLs this run's process group (a STOP fence gets
// about one second); a child in its own session is outside that group, and
// the fence does not wait seconds for it.
func resetDetached(configPath string, stderr io.Writer) func(context.Context, string, *slog.Logger) error {
	return func(ctx context.Context, vip string, log *slog.Logger) error {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding own executable: %w", err)
		}
		args := []string{"reset-clients", vip}
		if configPath != "" {
			args = append([]string{"-c", configPath}, args...)
		}
		cmd := exec.Command(self, args...)
		cmd.Stderr = stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting reset-clients: %w", err)
		}
		log.Info("stale TCP client reset runs detached", "pid", cmd.Process.Pid, "vip", vip)
		// Reap it if this process lives long enough; never wait for it.
		go func() { _ = cmd.Wait() }()
		return nil
	}
}

func handleOne(ctx context.Context, eng *fence.Engine, ev fence.Event) error {
	if ev.Action() == fence.Ignore {
		// Recording it would supersede a run in progress for nothing.
		eng.Log.Warn("unknown keepalived state: changing nothing", "state", ev.State, "instance", ev.Name)
		return nil
	}
	if !eng.Relevant(ev) {
		eng.Log.Info("event for another instance: ignored", "instance", ev.Name, "want", eng.Cfg.Notify.Instance)
		return nil
	}
	gen, err := eng.Bump(ctx, ev)
	if err != nil {
		return err
	}
	return eng.Handle(ctx, ev, gen)
}

type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// exitCode is the one place mapping run's result to the process status.
func exitCode(err error) int {
	var ce *cli.ConfigError
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return exitConfig
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, fence.ErrSuperseded), errors.Is(err, fence.ErrPreempted):
		return exitSuperseded
	case errors.Is(err, fence.ErrGateNotMet), errors.Is(err, fence.ErrRefused):
		return exitRefused
	case errors.Is(err, fence.ErrInterrupted):
		return exitInterrupted
	}
	return exitFailed
}

// runFIFO serves keepalived's notify_fifo. The FIFO is opened read-write
// so that keepalived closing and reopening it (reload) is no EOF.
//
// keepalived reuses a FIFO that exists, and every line in it is an order
// (a MASTER line promotes): a FIFO another user owns or may write to, or a
// symlink to one, is refused.
func runFIFO(ctx context.Context, eng *fence.Engine, path string) error {
	f, err := safefile.OpenFIFO("fifo", path)
	if err != nil {
		var se *safefile.Error
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("opening fifo %q: %w", path, err)
	}
	defer f.Close()
	eng.Log.Info("reading notify_fifo", "fifo", path)
	return eng.ServeFIFO(ctx, f)
}
