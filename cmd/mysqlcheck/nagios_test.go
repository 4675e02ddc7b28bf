package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// The Monitoring Plugins guidelines' output grammar: one line
// "SERVICE STATUS - text", optionally " | " and space-separated perfdata
// 'label'=value[UOM];[warn];[crit];[min];[max], numbers in the C locale,
// UOM one of the listed units. On top of the guidelines, this plugin
// always gives min, and max where one exists.
var (
	statusRe = regexp.MustCompile(`^VIPGUARD (OK|WARNING|CRITICAL|UNKNOWN) - ([^|\n]+?)(?: \| ([^|\n]+))?\n$`)
	number   = `-?[0-9]+(?:\.[0-9]+)?`
	perfRe   = regexp.MustCompile(`^'([^'=]+)'=(` + number + `)(s|ms|us|%|B|KB|MB|TB|c)?;(` + number + `)?;(` + number + `)?;(` + number + `)?;(` + number + `)?$`)
	codes    = map[string]int{"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
)

// parsePlugin checks out against the grammar and code against the status
// word, and returns the status and the perfdata by label.
func parsePlugin(t *testing.T, out string, code int) (string, map[string][]string) {
	t.Helper()
	m := statusRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("not a plugin status line: %q", out)
	}
	if codes[m[1]] != code {
		t.Fatalf("status %s exited %d: %q", m[1], code, out)
	}
	perf := map[string][]string{}
	if m[3] != "" {
		for _, item := range strings.Split(m[3], " ") {
			p := perfRe.FindStringSubmatch(item)
			if p == nil {
				t.Fatalf("perfdata %q does not follow 'label'=value[UOM];[warn];[crit];[min];[max] (%q)", item, out)
			}
			if p[6] == "" {
				t.Fatalf("perfdata %q has no min", item)
			}
			perf[p[1]] = p[2:]
		}
	}
	return m[1], perf
}

// Every status the plugin can report, from the real binary.
func TestNagiosOutputGrammar(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 5, ReadOnly: true})
	dir := t.TempDir()
	port := witnessed(t, dir)
	conf := func(check string) string {
		return writeConfig(t, fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\nuser = \"root\"\n[check]\nlearned_witness_port = %d\n%s", dir, s.Socket, port, check))
	}
	plain, warnMaint := conf(""), conf("nagios_maintenance = \"warning\"\n")
	// The same node with nothing learned: no witness at all.
	unguarded := writeConfig(t, fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\nuser = \"root\"\n", t.TempDir(), s.Socket))
	notSocket := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(notSocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	wrongSocket := writeConfig(t, fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\n", dir, notSocket))
	badValue := conf("nagios_maintenance = \"critical\"\n")

	type row struct {
		name   string
		before string // SQL run first
		args   []string
		status string
		text   string
		perf   []string
	}
	for _, tc := range []row{
		{"critical: read-only, no replication", "", []string{"-c", plain}, "CRITICAL", "not replicating", []string{"time"}},
		{"ok: writer", "SET GLOBAL read_only=OFF", []string{"-c", plain}, "OK", "writer", []string{"time"}},
		{"warning: no witness", "", []string{"-c", unguarded}, "WARNING", "no witness: this node cannot tell", []string{"time"}},
		{"ok: maintenance by default", "", []string{"-c", plain, "maint", "on", "--reason", "disk | swap"}, "", "", nil},
		{"ok: maintenance", "", []string{"-c", plain}, "OK", "maintenance mode is on", []string{"time"}},
		{"warning: maintenance when configured", "", []string{"-c", warnMaint}, "WARNING", "disk / swap", []string{"time"}},
		{"maintenance off", "", []string{"-c", plain, "maint", "off"}, "", "", nil},
		{"unknown: socket path is a file", "", []string{"-c", wrongSocket}, "UNKNOWN", "configuration problem", []string{"time"}},
		{"unknown: invalid configuration", "", []string{"-c", badValue}, "UNKNOWN", `check.nagios_maintenance "critical"`, nil},
		{"unknown: usage error", "", []string{"-c", plain, "--bogus"}, "UNKNOWN", "usage error: unknown flag --bogus", nil},
		{"unknown: usage error after the command", "", []string{"-c", plain, "check", "extra"}, "UNKNOWN", "usage error", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != "" {
				if err := s.Exec(t.Context(), tc.before); err != nil {
					t.Fatal(err)
				}
			}
			if tc.status == "" { // a maint step, not a plugin run
				if r := runBin(t, tc.args...); r.Code != 0 {
					t.Fatalf("%+v", r)
				}
				return
			}
			r := runBin(t, append(tc.args, "--nagios")...)
			if r.Stderr != "" {
				t.Errorf("stderr: %q", r.Stderr)
			}
			status, perf := parsePlugin(t, r.Stdout, r.Code)
			if status != tc.status || !strings.Contains(r.Stdout, tc.text) {
				t.Fatalf("got %q (exit %d), want %s containing %q", r.Stdout, r.Code, tc.status, tc.text)
			}
			if len(perf) != len(tc.perf) {
				t.Fatalf("perfdata %v, want %v", perf, tc.perf)
			}
			for _, l := range tc.perf {
				if perf[l] == nil {
					t.Fatalf("no %q perfdata in %q", l, r.Stdout)
				}
			}
		})
	}
}

// The backstop timer's line (the process exits from the timer, so its
// output is checked here) and the lag perfdata follow the same grammar.
func TestNagiosTimerAndLagOutput(t *testing.T) {
	c := config.Default().Check
	for _, tc := range []struct {
		name   string
		st     check.Status
		perf   []perfdatum
		status string
		labels []string
	}{
		{"check timer", check.Critical, perfdata(c, 900*time.Millisecond, nil), "CRITICAL", []string{"time"}},
		{"config timer", check.Unknown, nil, "UNKNOWN", nil},
		{"lag", check.Warning, perfdata(c, 3*time.Millisecond, ptr(42*time.Second)), "WARNING", []string{"time", "lag"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := giveUp(true, &stdout, &stderr, tc.st, "no verdict within 800ms | or so\nreally", tc.perf)
			if stderr.Len() != 0 {
				t.Errorf("stderr: %q", stderr.String())
			}
			status, perf := parsePlugin(t, stdout.String(), code)
			if status != tc.status {
				t.Fatalf("got %q, want %s", stdout.String(), tc.status)
			}
			for _, l := range tc.labels {
				if perf[l] == nil {
					t.Fatalf("no %q perfdata in %q", l, stdout.String())
				}
			}
		})
	}
	// The values: lag 42 s against warn_lag 30 s and max_lag 300 s, from 0;
	// time against the deadline, from 0 to the deadline.
	line := statusLine(check.Warning, "x", perfdata(c, 3*time.Millisecond, ptr(42*time.Second)))
	if !strings.HasSuffix(line, " | 'time'=0.003s;;0.8;0;0.8 'lag'=42s;30;300;0;\n") {
		t.Fatalf("perfdata values: %q", line)
	}
	// keepalived mode: the timer's line is the unfit one, on stderr.
	var stdout, stderr bytes.Buffer
	if code := giveUp(false, &stdout, &stderr, check.Critical, "no verdict within 800ms", nil); code != exitUnfit || stdout.Len() != 0 ||
		stderr.String() != "mysqlcheck: unfit: no verdict within 800ms\n" {
		t.Fatalf("keepalived mode: %d %q %q", code, stdout.String(), stderr.String())
	}
}

func ptr[T any](v T) *T { return &v }

// "vipguard check --help" runs mysqlcheck with VIPGUARD_AS=vipguard: help
// and usage errors name the command the operator typed.
func TestFrontCommandName(t *testing.T) {
	t.Setenv(asName, "vipguard")
	if r := runBin(t, "check", "--help"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "Usage: vipguard check") {
		t.Fatalf("help: %+v", r)
	}
	if r := runBin(t, "check", "--bogus"); r.Code != 80 || r.Stderr != "vipguard: error: unknown flag --bogus\n" {
		t.Fatalf("usage error: %+v", r)
	}
}

// --nagios is part of the top-level help, not only of "check --help".
func TestNagiosInTopLevelHelp(t *testing.T) {
	if r := runBin(t, "--help"); r.Code != 0 || !strings.Contains(r.Stdout, "--nagios") {
		t.Fatalf("%+v", r)
	}
}
