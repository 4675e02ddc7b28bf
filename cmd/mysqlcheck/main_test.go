package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/mariadbtest"
)

// The CLI contract (exit codes, one-line messages) is tested on the built
// binary, as keepalived runs it.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mysqlcheck-bin")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "mysqlcheck")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building mysqlcheck: %v\n%s", err, out)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func runBin(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: o.String(), stderr: e.String(), took: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vipguard.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageAndConfigErrors(t *testing.T) {
	if r := runBin(t, "--bogus"); r.code != 80 || !strings.Contains(r.stderr, "mysqlcheck: error:") {
		t.Fatalf("usage error: %+v", r)
	}
	if r := runBin(t, "--version"); r.code != 0 || r.stdout == "" {
		t.Fatalf("version: %+v", r)
	}
	bad := writeConfig(t, "[check]\ntimout = \"1s\"\n")
	r := runBin(t, "-c", bad)
	if r.code != 2 || !regexp.MustCompile(`^mysqlcheck: error: config ".*": line 2: unknown key "check.timout"\n$`).MatchString(r.stderr) {
		t.Fatalf("bad config: %+v", r)
	}
	if r := runBin(t, "-c", bad, "--nagios"); r.code != 3 || !strings.HasPrefix(r.stdout, "VIPGUARD UNKNOWN - ") {
		t.Fatalf("bad config in nagios mode: %+v", r)
	}
	if r := runBin(t, "-c", "/nonexistent/vipguard.toml"); r.code != 2 || !strings.Contains(r.stderr, `"/nonexistent/vipguard.toml"`) {
		t.Fatalf("missing explicit config: %+v", r)
	}
}

func TestVerdictsAndMaintenance(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 3, ReadOnly: true})
	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\nuser = \"root\"\n", dir, s.Socket))

	// Read-only and replicating from no one: unfit.
	r := runBin(t, "-c", cfg)
	if r.code != 1 || r.stderr != "mysqlcheck: unfit: read-only and not replicating from any source\n" {
		t.Fatalf("lone read-only node: %+v", r)
	}
	if err := s.Exec(t.Context(), "SET GLOBAL read_only=OFF"); err != nil {
		t.Fatal(err)
	}
	if r := runBin(t, "-c", cfg); r.code != 0 || !strings.HasPrefix(r.stdout, "mysqlcheck: fit: writer") {
		t.Fatalf("writer: %+v", r)
	}
	if r := runBin(t, "-c", cfg, "-q"); r.code != 0 || r.stdout != "" {
		t.Fatalf("quiet: %+v", r)
	}
	r = runBin(t, "-c", cfg, "--nagios")
	if r.code != 0 || !regexp.MustCompile(`^VIPGUARD OK - writer: .* \| time=[0-9.]+s;;0\.800\n$`).MatchString(r.stdout) {
		t.Fatalf("nagios ok: %+v", r)
	}

	// The maintenance switch, and the check honouring it.
	if r := runBin(t, "-c", cfg, "maint", "on", "--reason", "disk swap"); r.code != 0 || !strings.Contains(r.stdout, "maintenance: on since") || !strings.Contains(r.stdout, "(disk swap)") {
		t.Fatalf("maint on: %+v", r)
	}
	if r := runBin(t, "-c", cfg, "maint", "status"); r.code != 0 || !strings.Contains(r.stdout, "(disk swap)") {
		t.Fatalf("maint status: %+v", r)
	}
	if r := runBin(t, "-c", cfg); r.code != 1 || !strings.Contains(r.stderr, "unfit: maintenance mode is on since") {
		t.Fatalf("check in maintenance: %+v", r)
	}
	if r := runBin(t, "-c", cfg, "--nagios"); r.code != 2 || !strings.HasPrefix(r.stdout, "VIPGUARD CRITICAL - maintenance") {
		t.Fatalf("nagios in maintenance: %+v", r)
	}
	if r := runBin(t, "-c", cfg, "maint", "off"); r.code != 0 || r.stdout != "maintenance: off\n" {
		t.Fatalf("maint off: %+v", r)
	}
	if r := runBin(t, "-c", cfg, "maint", "sideways"); r.code != 80 {
		t.Fatalf("bad maint action: %+v", r)
	}
	if r := runBin(t, "-c", cfg); r.code != 0 {
		t.Fatalf("after maint off: %+v", r)
	}

	// Frozen server: the process answers unfit within its deadline.
	if err := s.Freeze(); err != nil {
		t.Fatal(err)
	}
	defer s.Thaw()
	r = runBin(t, "-c", cfg, "--timeout", "400ms")
	if r.code != 1 || !strings.Contains(r.stderr, "did not answer within 400ms") {
		t.Fatalf("frozen: %+v", r)
	}
	if r.took > 400*time.Millisecond+400*time.Millisecond {
		t.Fatalf("frozen server: process took %s for a 400ms deadline", r.took)
	}
	s.Thaw()

	// Dead server.
	s.Kill()
	if r := runBin(t, "-c", cfg); r.code != 1 || !strings.Contains(r.stderr, "mysqld is not running") {
		t.Fatalf("dead: %+v", r)
	}
}
