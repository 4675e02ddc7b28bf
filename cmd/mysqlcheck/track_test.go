package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// TestTrackBackstop: keepalived keeps believing the track file after
// agentcheck died. mysqlcheck rewrites a stale one with its own verdict,
// leaves a fresh one alone, and refuses one it cannot trust.
func TestTrackBackstop(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 43})
	dir := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf("state_dir = %q\n[mysql]\nsocket = %q\nuser = \"root\"\n[check]\nlearned_witness_port = %d\n", dir, s.Socket, witnessed(t, dir)))
	path := filepath.Join(dir, "mysql.track") // the default: in state_dir
	put := func(content string, age time.Duration) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-age)
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	// agentcheck died having written "1": the node would stay in FAULT.
	put("1 agentcheck: no answer for 7 polls in a row\n", 10*time.Second)
	r := runBin(t, "-c", cfg)
	if r.Code != 0 || !strings.Contains(r.Stdout, "agentcheck dead or hung): rewrote it with this verdict") {
		t.Fatalf("stale fault: %+v", r)
	}
	if got := read(); !strings.HasPrefix(got, "0 mysqlcheck: writer: ") {
		t.Fatalf("stale fault not rewritten: %q", got)
	}

	// A fresh file is agentcheck's: believed, untouched.
	put("1 agentcheck: no answer for 7 polls in a row\n", 0)
	if r := runBin(t, "-c", cfg); r.Code != 0 || strings.Contains(r.Stdout, "track file") {
		t.Fatalf("fresh: %+v", r)
	}
	if got := read(); got != "1 agentcheck: no answer for 7 polls in a row\n" {
		t.Fatalf("fresh file was touched: %q", got)
	}

	// The Nagios plugin only reads: it may run as another user.
	put("1 agentcheck: old\n", time.Hour)
	if r := runBin(t, "-c", cfg, "--nagios"); r.Code != 0 || read() != "1 agentcheck: old\n" {
		t.Fatalf("nagios touched the file: %+v %q", r, read())
	}

	// A file anyone may write steers keepalived all the same: unfit.
	put("0 agentcheck: fine\n", 0)
	os.Chmod(path, 0o666)
	r = runBin(t, "-c", cfg)
	if r.Code != 1 || !strings.Contains(r.Stderr, "is writable by its group or others") || !strings.Contains(r.Stderr, "it steers keepalived") {
		t.Fatalf("untrusted: %+v", r)
	}
	os.Remove(path)

	// A stale "0" over a dead mysqld: the exit code fails the node, and
	// the file is made true too.
	s.Kill()
	put("0 agentcheck: writer: read_only=OFF\n", 10*time.Second)
	r = runBin(t, "-c", cfg)
	if r.Code != 1 || !strings.Contains(r.Stderr, "mysqld is not running") {
		t.Fatalf("dead: %+v", r)
	}
	f, err := check.ReadTrack(path)
	if err != nil || f == nil || !f.Unfit || f.Writer != check.WriterCheck {
		t.Fatalf("stale fine over a dead mysqld not rewritten: %+v %v (%q)", f, err, read())
	}
}
