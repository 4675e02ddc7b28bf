// Command vipguard is the operator's command for a vipguard pair: it shows
// both nodes at a glance, checks the setup before a failover trips on it,
// switches the writer over on purpose, and toggles this node's maintenance.
//
//	vipguard status [--json]            both nodes: role, VIP, replication, notify, agentcheck
//	vipguard doctor [--json]            one line per setup check: OK, WARN or FAIL, and the fix
//	vipguard switchover [--dry-run]     move the writer to the peer, under a deadline
//	vipguard maint on|off|status        this node's maintenance flag
//	vipguard check [--nagios] [-q]      mysqlcheck's verdict on this node
//	vipguard version
//
// The peer is read through its agentcheck (GET /status.json on [peer]
// agent, by default [peer] host with the port of [agent] http_listen) and,
// for doctor, over MySQL as [peer] user.
//
// Exit codes: 0 ok; 1 failed; 2 configuration error; 3 a warning (doctor:
// the worst check is WARN; status: a node could not be read); 4 a problem
// (doctor: a check FAILs; status: the pair is wrong, e.g. two writers;
// switchover: refused); 5 switchover did not complete within --timeout;
// 80 command-line usage error. check exits as mysqlcheck does.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/go-sql-driver/mysql"

	"github.com/vipguard/vipguard/internal/cli"
)

const prog = "vipguard"

// Exit codes beyond cli's (0 ok, 1 failed, 2 configuration, 80 usage).
const (
	exitWarning    = 3
	exitProblem    = 4
	exitIncomplete = 5
)

type cmdline struct {
	cli.Globals
	Status     statusCmd     `cmd:"" help:"Show both nodes of the pair: role, VIP, replication, maintenance, notify's last transition, agentcheck's answers."`
	Doctor     doctorCmd     `cmd:"" help:"Check the setup of both nodes and this host; one line per check with the fix."`
	Switchover switchoverCmd `cmd:"" help:"Move the writer to the peer: maintenance on here, wait for the peer's promotion and this node's fence, maintenance off."`
	Maint      cli.MaintCmd  `cmd:"" help:"Turn maintenance mode on or off, or show it. On makes this node unfit, so keepalived moves the VIP away, and drains it in HAProxy."`
	Check      checkCmd      `cmd:"" passthrough:"all" help:"mysqlcheck's verdict: is this node fit to hold the VIP? (Arguments go to mysqlcheck.)"`
	Version    versionCmd    `cmd:"" help:"Print the version."`
}

// Errors run returns that map to their own exit codes.
var (
	// errWarning: the command ran and found something to warn about.
	errWarning = errors.New("warning")
	// errProblem: the command ran and found a problem (or refused).
	errProblem = errors.New("problem")
	// errIncomplete: a switchover did not complete in time.
	errIncomplete = errors.New("incomplete")
)

func main() {
	var c cmdline
	if len(os.Args) == 2 && os.Args[1] == "help" {
		os.Args[1] = "--help"
	}
	kctx := cli.Parse(&c, prog, "Operate a vipguard MySQL/MariaDB pair: status, doctor, switchover, maintenance.")
	// The driver logs every connection it finds cut; the switchover's
	// probe has its connections cut on purpose, and counts them itself.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := cli.Run(kctx, &cli.Env{Ctx: ctx, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, &c.Globals)
	if err != nil && !isVerdict(err) {
		cli.Errorf(os.Stderr, prog, "%v", err)
	}
	stop()
	os.Exit(exitCode(err))
}

// isVerdict reports whether err is only a verdict the output already shows.
func isVerdict(err error) bool {
	return errors.Is(err, errWarning) || errors.Is(err, errProblem) || errors.Is(err, errIncomplete)
}

// exitCode is the one place mapping run's result to the process status.
func exitCode(err error) int {
	switch {
	case errors.Is(err, errWarning):
		return exitWarning
	case errors.Is(err, errProblem):
		return exitProblem
	case errors.Is(err, errIncomplete):
		return exitIncomplete
	}
	return cli.ExitCode(err)
}

// The commands' Run methods, called by kong for the selected command.
func (s *statusCmd) Run(g *cli.Globals, env *cli.Env) error { return s.run(env.Ctx, g, env.Stdout) }
func (d *doctorCmd) Run(g *cli.Globals, env *cli.Env) error { return d.run(env.Ctx, g, env.Stdout) }
func (s *switchoverCmd) Run(g *cli.Globals, env *cli.Env) error {
	return s.run(env.Ctx, g, env.Stdout)
}
func (k *checkCmd) Run(g *cli.Globals) error { return k.run(g) }

type versionCmd struct{}

func (versionCmd) Run(env *cli.Env) error {
	fmt.Fprintln(env.Stdout, cli.VersionString())
	return nil
}

// checkCmd hands its arguments to mysqlcheck, which names itself
// "vipguard check" in help and usage errors: the verdict, its output and
// exit codes are exactly keepalived's.
type checkCmd struct {
	Args []string `arg:"" optional:"" passthrough:"all" help:"mysqlcheck's arguments (--nagios, -q, --timeout D)."`
}

// libexecDir is where the package installs the tools.
const libexecDir = "/usr/libexec/vipguard"

func (k *checkCmd) run(g *cli.Globals) error {
	bin, err := toolPath("mysqlcheck")
	if err != nil {
		return err
	}
	argv := []string{bin, "check"}
	if g.Config != "" {
		argv = append(argv, "-c", g.Config)
	}
	argv = append(argv, k.Args...)
	env := append(os.Environ(), "VIPGUARD_AS=vipguard")
	// exec: mysqlcheck's deadline, output and exit status are the
	// answer, with nothing in between.
	err = syscall.Exec(bin, argv, env)
	return fmt.Errorf("running %q: %w", bin, err)
}

// toolPath finds a vipguard tool: the installed one, or the one beside
// this binary (a build tree's bin/).
func toolPath(name string) (string, error) {
	p := filepath.Join(libexecDir, name)
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		q := filepath.Join(filepath.Dir(exe), name)
		if _, err := os.Stat(q); err == nil {
			return q, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s or beside vipguard", name, libexecDir)
}
