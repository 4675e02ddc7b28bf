package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
	"github.com/vipguard/vipguard/testsupport/clitest"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
	"github.com/vipguard/vipguard/testsupport/nettest"
)

// The CLI contract (exit codes, one-line messages) is tested on the built
// binary, as keepalived runs it.
var binPath string

func TestMain(m *testing.M) { clitest.Main(m, "mysqlcheck", &binPath) }

func runBin(t *testing.T, args ...string) clitest.Result {
	t.Helper()
	return clitest.Run(t, context.Background(), "", binPath, args...)
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vipguard.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// witnessed gives the node in stateDir a learned witness that answers (a
// closed loopback port) and returns its port, for learned_witness_port:
// without a witness a fit node is WARNING, not OK.
func witnessed(t *testing.T, stateDir string) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(nettest.Refusing(t))
	now := time.Now()
	data, err := witness.Encode([]witness.Learned{{IP: netip.MustParseAddr("127.0.0.1"), FirstSeen: now.Add(-time.Minute), LastSeen: now, Asks: 60}})
	if err != nil {
		t.Fatal(err)
	}
	if err := state.Dir(stateDir).WriteLearnedWitnesses(data); err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

func TestUsageAndConfigErrors(t *testing.T) {
	if r := runBin(t, "--bogus"); r.Code != 80 || !strings.Contains(r.Stderr, "mysqlcheck: error:") {
		t.Fatalf("usage error: %+v", r)
	}
	if r := runBin(t, "--version"); r.Code != 0 || r.Stdout == "" {
		t.Fatalf("version: %+v", r)
	}
	bad := writeConfig(t, "[check]\ntimout = \"1s\"\n")
	r := runBin(t, "-c", bad)
	if r.Code != 2 || !regexp.MustCompile(`^mysqlcheck: error: config ".*": line 2: unknown key "check.timout"\n$`).MatchString(r.Stderr) {
		t.Fatalf("bad config: %+v", r)
	}
	if r := runBin(t, "-c", bad, "--nagios"); r.Code != 3 || !strings.HasPrefix(r.Stdout, "VIPGUARD UNKNOWN - ") {
		t.Fatalf("bad config in nagios mode: %+v", r)
	}
	if r := runBin(t, "-c", "/nonexistent/vipguard.toml"); r.Code != 2 || !strings.Contains(r.Stderr, `"/nonexistent/vipguard.toml"`) {
		t.Fatalf("missing explicit config: %+v", r)
	}
}

func TestVerdictsAndMaintenance(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 3, ReadOnly: true})
	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\nuser = \"root\"\n[check]\nlearned_witness_port = %d\n", dir, s.Socket, witnessed(t, dir)))

	// Read-only and replicating from no one: unfit.
	r := runBin(t, "-c", cfg)
	if r.Code != 1 || r.Stderr != "mysqlcheck: unfit: read-only and not replicating from any source\n" {
		t.Fatalf("lone read-only node: %+v", r)
	}
	if err := s.Exec(t.Context(), "SET GLOBAL read_only=OFF"); err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, "-c", cfg); r.Code != 0 || !strings.HasPrefix(r.Stdout, "mysqlcheck: fit: writer") {
		t.Fatalf("writer: %+v", r)
	}
	if r := runBin(t, "-c", cfg, "-q"); r.Code != 0 || r.Stdout != "" {
		t.Fatalf("quiet: %+v", r)
	}
	r = runBin(t, "-c", cfg, "--nagios")
	if r.Code != 0 || !regexp.MustCompile(`^VIPGUARD OK - writer: .* \| 'time'=[0-9.]+s;;0\.8;0;0\.8\n$`).MatchString(r.Stdout) {
		t.Fatalf("nagios ok: %+v", r)
	}

	// The maintenance switch, and the check honouring it.
	if r := runBin(t, "-c", cfg, "maint", "on", "--reason", "disk swap"); r.Code != 0 || !strings.Contains(r.Stdout, "maintenance: on since") || !strings.Contains(r.Stdout, "(disk swap)") {
		t.Fatalf("maint on: %+v", r)
	}
	if r := runBin(t, "-c", cfg, "maint", "status"); r.Code != 0 || !strings.Contains(r.Stdout, "(disk swap)") {
		t.Fatalf("maint status: %+v", r)
	}
	if r := runBin(t, "-c", cfg); r.Code != 1 || !strings.Contains(r.Stderr, "unfit: maintenance mode is on since") {
		t.Fatalf("check in maintenance: %+v", r)
	}
	if r := runBin(t, "-c", cfg, "--nagios"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "VIPGUARD OK - maintenance") {
		t.Fatalf("nagios in maintenance: %+v", r)
	}
	if r := runBin(t, "-c", cfg, "maint", "off"); r.Code != 0 || r.Stdout != "maintenance: off\n" {
		t.Fatalf("maint off: %+v", r)
	}
	if r := runBin(t, "-c", cfg, "maint", "sideways"); r.Code != 80 {
		t.Fatalf("bad maint action: %+v", r)
	}
	if r := runBin(t, "-c", cfg); r.Code != 0 {
		t.Fatalf("after maint off: %+v", r)
	}

	// Frozen server: the process answers unfit within its deadline.
	if err := s.Freeze(); err != nil {
		t.Fatal(err)
	}
	defer s.Thaw()
	r = runBin(t, "-c", cfg, "--timeout", "400ms")
	if r.Code != 1 || !strings.Contains(r.Stderr, "did not answer within 400ms") {
		t.Fatalf("frozen: %+v", r)
	}
	if r.Took > 400*time.Millisecond+400*time.Millisecond {
		t.Fatalf("frozen server: process took %s for a 400ms deadline", r.Took)
	}
	s.Thaw()

	// Dead server.
	s.Kill()
	if r := runBin(t, "-c", cfg); r.Code != 1 || !strings.Contains(r.Stderr, "mysqld is not running (nothing listens on "+fmt.Sprintf("%q", s.Socket)) {
		t.Fatalf("dead: %+v", r)
	}
}

// A maintenance reason reaches keepalived's log and a terminal: control
// bytes in it are escaped, never written raw.
func TestReasonEscaped(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\n", dir, filepath.Join(dir, "none.sock")))
	if r := runBin(t, "-c", cfg, "maint", "on", "--reason", "red\x1b[31m alert\x07"); r.Code != 0 {
		t.Fatalf("maint on: %+v", r)
	}
	r := runBin(t, "-c", cfg)
	if r.Code != 1 || !strings.Contains(r.Stderr, "maintenance mode is on") || strings.ContainsAny(r.Stderr, "\x1b\x07") {
		t.Fatalf("check: %+v", r)
	}
}
