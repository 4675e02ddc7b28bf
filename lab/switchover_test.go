package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/nodestatus"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// vipguardRun runs the built vipguard in the node's namespace with the
// node's config, as an operator on that host would.
func (l *Lab) vipguardRun(ctx context.Context, name string, limit time.Duration, args ...string) (int, string) {
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	argv := append(append(l.Net.Wrap(name), filepath.Join(l.Bin, "vipguard"), "-c", l.Nodes[name].Config), args...)
	out, err := exec.CommandContext(cctx, argv[0], argv[1:]...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	return -1, err.Error() + ": " + string(out)
}

// pairStatus is vipguard status --json on name.
type pairStatus struct {
	Local    *nodestatus.Status `json:"local"`
	Peer     *nodestatus.Status `json:"peer"`
	Problems []string           `json:"problems"`
}

func (l *Lab) vipguardStatus(ctx context.Context, t *testing.T, name string) (int, pairStatus) {
	t.Helper()
	code, out := l.vipguardRun(ctx, name, 20*time.Second, "status", "--json")
	var ps pairStatus
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("vipguard status --json on %s: exit %d: %v\n%s", name, code, err, out)
	}
	return code, ps
}

// waitStatus runs vipguard status on name until ok says so, for at most
// 10 s (the peer's document is up to one poll old), and returns the last.
func (l *Lab) waitStatus(ctx context.Context, t *testing.T, name string, ok func(int, pairStatus) bool) (int, pairStatus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, ps := l.vipguardStatus(ctx, t, name)
		if ok(code, ps) || time.Now().After(deadline) {
			return code, ps
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return code, ps
		}
	}
}

var windowRE = regexp.MustCompile(`write-unavailability window ([0-9.]+m?s)`)

// TestSwitchoverUnderWrites: vipguard status sees the pair as it is;
// doctor passes the lab's setup; switchover refuses while the peer is in
// maintenance, rolls back when it cannot complete in time, and then, under
// writes through the VIP and HAProxy, moves the writer to the peer, loses
// no acknowledged write, never leaves both nodes writable, reports its
// window, and leaves the old writer a fenced standby replicating from the
// new one.
func TestSwitchoverUnderWrites(t *testing.T) {
	l := needLab(t)
	ctx := testCtx(t)
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	from, err := l.Holder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	to := l.Nodes[from].Peer
	recovered := false
	defer func() {
		if !recovered {
			_ = l.Maintenance(ctx, to, false, "")
			if err := l.Recover(ctx, 90*time.Second); err != nil {
				t.Errorf("lab could not recover: %v", err)
			}
		}
	}()

	// status: the holder is the writer, its peer a fenced standby.
	for _, c := range []struct{ node, local, peer string }{{from, nodestatus.RoleWriter, nodestatus.RoleFenced}, {to, nodestatus.RoleFenced, nodestatus.RoleWriter}} {
		// The standby is fenced once notify ran there; standby would do.
		code, ps := l.waitStatus(ctx, t, c.node, func(code int, ps pairStatus) bool {
			return code == 0 && sameRole(ps.Local, c.local) && sameRole(ps.Peer, c.peer) && len(ps.Problems) == 0
		})
		if code != 0 || !sameRole(ps.Local, c.local) || !sameRole(ps.Peer, c.peer) || len(ps.Problems) != 0 {
			t.Fatalf("status on %s: exit %d, local %s, peer %+v, problems %v", c.node, code, ps.Local.Role, ps.Peer, ps.Problems)
		}
		if (ps.Local.VIP != nil && ps.Local.VIP.Held) != (c.node == from) {
			t.Errorf("status on %s: VIP held %+v", c.node, ps.Local.VIP)
		}
	}

	// doctor on both nodes: the lab runs the examples, so everything
	// passes but what the lab leaves at MariaDB's defaults (sync_binlog)
	// and what cannot be told of the peer (read_only at its start, set
	// since by notify).
	for _, name := range []string{from, to} {
		code, out := l.vipguardRun(ctx, name, 60*time.Second, "doctor", "--keepalived-conf", l.Nodes[name].kaConf, "--haproxy-cfg", l.Proxy.Config)
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			switch {
			case strings.HasPrefix(line, "OK "),
				strings.HasPrefix(line, "WARN  local  sync_binlog "), strings.HasPrefix(line, "WARN  peer   sync_binlog "),
				strings.HasPrefix(line, "SKIP  peer   read_only_at_start "):
			default:
				t.Errorf("doctor on %s: %s", name, line)
			}
		}
		if code != 3 {
			t.Errorf("doctor on %s: exit %d, want 3 (sync_binlog WARN)\n%s", name, code, out)
		}
	}

	// The probe's table and account: the application's, which read_only stops.
	if err := l.Nodes[from].DB.Exec(ctx, "CREATE TABLE IF NOT EXISTS vgtest.switchover_probe (run VARCHAR(64) NOT NULL, seq INT NOT NULL, "+
		"server_id INT UNSIGNED NOT NULL, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (run, seq))"); err != nil {
		t.Fatal(err)
	}
	probeCnf := filepath.Join(l.Nodes[from].Dir, "probe.cnf")
	if err := os.WriteFile(probeCnf, fmt.Appendf(nil, "[client]\nuser = %s\npassword = \"%s\"\nport = %d\n",
		mariadbtest.AppUser, mariadbtest.AppPassword, MySQLPort), 0o600); err != nil {
		t.Fatal(err)
	}
	probeArgs := []string{"--probe-defaults-file", probeCnf, "--probe-table", "vgtest.switchover_probe"}

	// Refused while the peer is in maintenance; nothing changes.
	if err := l.Maintenance(ctx, to, true, "lab: refuse the switchover"); err != nil {
		t.Fatal(err)
	}
	code, out := l.vipguardRun(ctx, from, 30*time.Second, append([]string{"switchover"}, probeArgs...)...)
	if code != 4 || !strings.Contains(out, "refused: the peer is in maintenance") {
		t.Errorf("switchover to a peer in maintenance: exit %d\n%s", code, out)
	}
	if h, _ := l.Holder(ctx); h != from {
		t.Fatalf("refused switchover moved the VIP to %q", h)
	}
	if c := l.Mysqlcheck(ctx, from); !c.Fit() {
		t.Errorf("refused switchover left %s unfit: %s", from, c)
	}
	if err := l.Maintenance(ctx, to, false, ""); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitStable(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Not complete in time: exit 5, maintenance off again, a stable pair.
	// A switchover now completes in about half a second, so the bound is
	// 1ms: the first reading of the pair already comes after it. The
	// track file's fast path (a poll every 200ms) may still move the VIP
	// before maintenance is off again: a failover the rollback cannot
	// undo, and then the peer is the writer the rest of the test starts
	// from.
	code, out = l.vipguardRun(ctx, from, 30*time.Second, "switchover", "--timeout", "1ms")
	if code != 5 || !strings.Contains(out, "switchover NOT completed") || !strings.Contains(out, "maintenance off here") {
		t.Errorf("switchover past its timeout: exit %d\n%s", code, out)
	}
	if err := l.WaitStable(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if h, _ := l.Holder(ctx); h != from {
		t.Logf("the VIP moved to %s during the incomplete switchover; going on from there", h)
		from, to = to, from
	}
	code, out = l.vipguardRun(ctx, from, 30*time.Second, append([]string{"switchover", "--dry-run"}, probeArgs...)...)
	if code != 0 || !strings.Contains(out, "dry run: nothing changed") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}

	// The switchover, under writes.
	sampler, err := l.StartSampler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := l.StartLoad(ctx, LoadOptions{})
	if err != nil {
		sampler.Stop()
		t.Fatal(err)
	}
	if err := sleep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out = l.vipguardRun(ctx, from, 90*time.Second, append([]string{"switchover", "--timeout", "60s"}, probeArgs...)...)
	took := time.Since(start)
	t.Logf("vipguard switchover on %s (%s):\n%s", from, took.Round(time.Millisecond), out)
	if code != 0 || !strings.Contains(out, "switchover done") {
		ld.Stop()
		sampler.Stop()
		t.Fatalf("switchover: exit %d\n%s\n%s", code, out, l.Diagnostics())
	}
	if !strings.Contains(out, "all found on the writer") {
		t.Errorf("probe lost acknowledged writes:\n%s", out)
	}
	if err := ld.WaitWrites(ctx, int(l.Nodes[to].DB.Opts.ServerID), 30*time.Second); err != nil {
		t.Error(err)
	}
	lr, err := ld.Stop()
	rep := sampler.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := l.Holder(ctx); h != to {
		t.Errorf("VIP on %q after the switchover, want %s", h, to)
	}
	if n := len(rep.BothWritable); n > 0 {
		t.Errorf("both nodes writable in %d of %d samples", n, rep.Samples)
	}
	if len(lr.Errors) > 0 {
		t.Errorf("load generator errors: %s", strings.Join(lr.Errors, "; "))
	}
	if err := l.WaitStable(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyAll(ctx, lr.Acked); err != nil {
		t.Error(err)
	}
	window := "?"
	if m := windowRE.FindStringSubmatch(out); m != nil {
		window = m[1]
	}
	record(t, fmt.Sprintf("%-16s %s→%s  vipguard switchover in %.2fs, probe window %s, load window %.2fs (VIP %.2fs, HAProxy %.2fs), acked %d, both-writable samples %d/%d",
		"switchover", from, to, took.Seconds(), window, lr.MaxGap().Seconds(), lr.PathGap("vip").Seconds(), lr.PathGap("proxy").Seconds(),
		len(lr.Acked), len(rep.BothWritable), rep.Samples))

	// status again: the roles swapped, maintenance off on both.
	swapped := func(code int, ps pairStatus) bool {
		return code == 0 && ps.Local.Role == nodestatus.RoleWriter && ps.Peer != nil && ps.Peer.Role == nodestatus.RoleFenced &&
			!ps.Local.Maintenance.On && !ps.Peer.Maintenance.On && ps.Peer.Streaming()
	}
	if code, ps := l.waitStatus(ctx, t, to, swapped); !swapped(code, ps) {
		t.Errorf("status on %s after the switchover: exit %d, local %+v, peer %+v", to, code, ps.Local, ps.Peer)
	}
	recovered = true
}

// sameRole accepts a standby where a fenced one is expected.
func sameRole(s *nodestatus.Status, want string) bool {
	return s != nil && (s.Role == want || want == nodestatus.RoleFenced && s.Role == nodestatus.RoleStandby)
}
