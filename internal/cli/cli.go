// Package cli holds what the three vipguard commands share on the command
// line: the -c flag, the version string, error printing in the house format
// ("prog: error: ..."), and the maintenance toggle that mysqlcheck and
// agentcheck both offer.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"runtime/debug"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/alecthomas/kong"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/state"
)

// Version is stamped at build time with -ldflags "-X ...cli.Version=v1.2.3".
var Version = ""

// VersionString returns the stamped version, or the module version the
// binary was built from, or "(devel)".
func VersionString() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// Exit codes shared by every vipguard command. Command-specific codes
// (mysqlcheck's verdicts) are defined by the command.
const (
	ExitOK     = 0
	ExitFailed = 1  // the operation ran and failed, or the node is unfit
	ExitConfig = 2  // configuration could not be loaded
	ExitUsage  = 80 // kong's code for command-line usage errors
)

// ConfigError marks an error in loading the configuration.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Globals are the flags every command takes.
type Globals struct {
	Config  string           `short:"c" help:"Configuration file (default ${default_config})." type:"path" placeholder:"FILE"`
	Version kong.VersionFlag `help:"Print the version and exit."`
}

// Vars are kong interpolation variables for Globals.
func Vars() kong.Vars {
	return kong.Vars{"default_config": config.DefaultPath, "version": VersionString()}
}

// Load reads the configuration named by -c (or the default).
func (g *Globals) Load() (*config.Config, error) {
	c, err := config.Load(g.Config)
	if err != nil {
		return nil, &ConfigError{err}
	}
	return c, nil
}

// Errorf prints "prog: error: ..." to w.
func Errorf(w io.Writer, prog, format string, a ...any) {
	fmt.Fprintf(w, "%s: error: %s\n", prog, fmt.Sprintf(format, a...))
}

// ExitCode maps an error from a command's run to its exit code.
func ExitCode(err error) int {
	var ce *ConfigError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ce):
		return ExitConfig
	}
	return ExitFailed
}

// MaintCmd is "maint on|off|status": the operator's maintenance switch.
type MaintCmd struct {
	Action string `arg:"" enum:"on,off,status" help:"on, off or status."`
	Reason string `help:"Why (shown by status, mysqlcheck and agentcheck)." placeholder:"TEXT"`
}

// Env is what every command's Run method is given besides the parsed
// command line: the process's context and streams (tests give others).
type Env struct {
	Ctx    context.Context
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Run performs the maintenance action and prints the resulting state.
func (m *MaintCmd) Run(g *Globals, env *Env) error { return m.run(g, env.Stdout) }

func (m *MaintCmd) run(g *Globals, stdout io.Writer) error {
	if m.Action == "on" {
		if err := state.CheckReason(m.Reason); err != nil {
			return err
		}
	}
	cfg, err := g.Load()
	if err != nil {
		return err
	}
	dir := state.Dir(cfg.StateDir)
	switch m.Action {
	case "on":
		if err := dir.SetMaintenance(true, m.Reason, whoami()); err != nil {
			return err
		}
	case "off":
		if err := dir.SetMaintenance(false, "", ""); err != nil {
			return err
		}
	}
	st, err := dir.Maintenance()
	if err != nil {
		return fmt.Errorf("reading maintenance flag %q: %w", dir.MaintenancePath(), err)
	}
	fmt.Fprintln(stdout, DescribeMaintenance(st))
	return nil
}

// DescribeMaintenance renders the flag in one line.
func DescribeMaintenance(m state.Maintenance) string {
	if !m.On {
		return "maintenance: off"
	}
	s := "maintenance: on"
	if !m.Since.IsZero() {
		s += " since " + m.Since.UTC().Format(time.RFC3339)
	}
	if m.By != "" {
		s += " by " + Printable(m.By)
	}
	if m.Reason != "" {
		s += fmt.Sprintf(" (%s)", Printable(m.Reason))
	}
	return s
}

// Printable escapes what a terminal would act on instead of showing:
// control bytes (ESC sequences, carriage returns, newlines), invalid
// UTF-8, and Unicode format characters (bidirectional overrides). Text
// from files anyone with access to state_dir can write, or from the
// server, goes through it before reaching a terminal.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if su := os.Getenv("SUDO_USER"); su != "" {
		name = su + " via sudo"
	}
	return name
}

// Parse parses os.Args into grammar with the house options and returns
// kong's context, whose selected command Run dispatches to. A usage error
// prints "prog: error: ..." with the usage and exits with ExitUsage.
func Parse(grammar any, prog, description string) *kong.Context {
	parser := kong.Must(grammar,
		kong.Name(prog),
		kong.Description(description),
		kong.UsageOnError(),
		Vars(),
	)
	kctx, err := parser.Parse(os.Args[1:])
	if err != nil {
		parser.Errorf("%s", err)
		os.Exit(ExitUsage)
	}
	return kctx
}

// Run calls the Run method of the command kctx selected. Its arguments are
// filled from env, the global flags g, and the parsed command line (the
// command's own struct and every parent's).
func Run(kctx *kong.Context, env *Env, g *Globals) error { return kctx.Run(env, g) }
