package lab

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/nodestatus"
	"github.com/vipguard/vipguard/internal/ops"
)

// statusWarning is vipguard's exit status when a node or server could not
// be read (cmd/vipguard exitWarning).
const statusWarning = 3

// statusPeerTimeout bounds status's read of the peer's agentcheck: a
// partitioned peer costs that much per run.
const statusPeerTimeout = time.Second

// pairOn runs vipguard status --json on name and decodes the document.
func (l *Lab) pairOn(ctx context.Context, t *testing.T, name string) (int, ops.Pair) {
	t.Helper()
	code, out := l.vipguardRun(ctx, name, 20*time.Second, "status", "--json", "--timeout", statusPeerTimeout.String())
	var p ops.Pair
	if err := json.Unmarshal([]byte(out), &p); err != nil || p.Local == nil {
		t.Fatalf("vipguard status --json on %s: exit %d: %v\n%s", name, code, err, out)
	}
	return code, p
}

// waitPair runs vipguard status --json on name until ok says so, for at
// most limit, and returns the last document.
func (l *Lab) waitPair(ctx context.Context, t *testing.T, name string, limit time.Duration, ok func(ops.Pair) bool) (int, ops.Pair) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		code, p := l.pairOn(ctx, t, name)
		if ok(p) || time.Now().After(deadline) {
			return code, p
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return code, p
		}
	}
}

func pairJSON(p ops.Pair) string {
	b, _ := json.MarshalIndent(p, "", "  ")
	return string(b)
}

// TestStatusShowsEveryState: vipguard status, run on each node as an
// operator would, shows the states the lab's faults produce. A standby
// whose mysqld was killed is unfit with the reason and in FAULT, beside a
// writer, seen so from itself and from the writer. A node cut off by a
// partition shows its peer as unreachable, and is unreachable from the
// other side: never a healthy or a stale document.
func TestStatusShowsEveryState(t *testing.T) {
	l, ctx, writer := stableLab(t)
	standby := l.Nodes[writer].Peer
	recovered := false
	defer func() {
		if !recovered {
			if err := l.Recover(ctx, 60*time.Second); err != nil {
				t.Errorf("lab could not recover: %v\n%s", err, l.Diagnostics())
			}
		}
	}()

	// The standby's mysqld crashes: keepalived puts the node in FAULT
	// and notify records it.
	t0 := time.Now()
	l.KillMySQL(standby)
	faulted := func(s *nodestatus.Status) bool {
		return s != nil && s.Notify != nil && s.Notify.Event == "FAULT" && s.Notify.At.After(t0)
	}
	code, p := l.waitPair(ctx, t, standby, 15*time.Second, func(p ops.Pair) bool { return faulted(p.Local) })
	t.Logf("%s killed: status there shows FAULT after %.1fs: role %s, %s: %s", standby, time.Since(t0).Seconds(), p.Local.Role, p.Local.Verdict, p.Local.Reason)
	if ka := l.KeepalivedState(standby); ka != "FAULT" {
		t.Errorf("keepalived on %s is %s with its mysqld killed, want FAULT", standby, ka)
	}
	if s := p.Local; !faulted(s) || s.Fit || s.Role != nodestatus.RoleUnknown || s.MySQL != nil || s.Reason == "" || s.PollError == "" {
		t.Errorf("status on %s, its mysqld killed: want role unknown, unfit with the reason, notify FAULT; got\n%s", standby, pairJSON(p))
	}
	if s := p.Peer; s == nil || s.Role != nodestatus.RoleWriter || s.VIP == nil || !s.VIP.Held || !s.Fit {
		t.Errorf("status on %s, its mysqld killed: want the peer %s a fit writer holding the VIP; got\n%s", standby, writer, pairJSON(p))
	}
	if code != statusWarning {
		t.Errorf("status on %s, its mysqld killed: exit %d, want %d (this node's server unreadable)", standby, code, statusWarning)
	}
	code, p = l.waitPair(ctx, t, writer, 10*time.Second, func(p ops.Pair) bool { return faulted(p.Peer) })
	if s := p.Peer; !faulted(s) || s.Fit || s.Role != nodestatus.RoleUnknown || s.MySQL != nil || s.Reason == "" {
		t.Errorf("status on %s: want its peer %s unknown, unfit with the reason, notify FAULT; got\n%s", writer, standby, pairJSON(p))
	}
	if s := p.Local; s.Role != nodestatus.RoleWriter || s.VIP == nil || !s.VIP.Held || !s.Fit {
		t.Errorf("status on %s: want a fit writer holding the VIP; got\n%s", writer, pairJSON(p))
	}
	if code != statusWarning {
		t.Errorf("status on %s with %s's server down: exit %d, want %d", writer, standby, code, statusWarning)
	}
	if err := l.Recover(ctx, 60*time.Second); err != nil {
		t.Fatalf("recovering from the kill: %v\n%s", err, l.Diagnostics())
	}

	// The standby is partitioned off: each side reaches only itself.
	t0 = time.Now()
	if err := l.Partition(ctx, standby); err != nil {
		t.Fatal(err)
	}
	const unknown = "one node's state is unknown: the pair cannot be judged"
	unreachable := func(p ops.Pair) bool { return p.Peer == nil && p.PeerError != "" }
	for _, c := range []struct{ name, peer, role string }{{standby, writer, ""}, {writer, standby, nodestatus.RoleWriter}} {
		code, p := l.waitPair(ctx, t, c.name, 10*time.Second, unreachable)
		t.Logf("%s partitioned: status on %s shows %s unreachable %.1fs later: %s", standby, c.name, c.peer, time.Since(t0).Seconds(), p.PeerError)
		if !unreachable(p) || !slices.Contains(p.Problems, unknown) || code != statusWarning {
			t.Errorf("status on %s, %s partitioned: want the peer unreachable, no document, %q, exit %d; got exit %d\n%s",
				c.name, standby, unknown, statusWarning, code, pairJSON(p))
		}
		if p.Local.MySQL == nil || c.role != "" && p.Local.Role != c.role {
			t.Errorf("status on %s, %s partitioned: its own server must read as before; got\n%s", c.name, standby, pairJSON(p))
		}
	}
	// What an operator reads on the cut-off node says so in words.
	if _, out := l.vipguardRun(ctx, standby, 20*time.Second, "status", "--timeout", statusPeerTimeout.String()); !strings.Contains(out, "UNREACHABLE, state unknown") || strings.Contains(out, "pair: ok") {
		t.Errorf("status on %s, partitioned: want the peer UNREACHABLE, and no \"pair: ok\":\n%s", standby, out)
	}
	if err := l.Recover(ctx, 60*time.Second); err != nil {
		t.Fatalf("healing the partition: %v\n%s", err, l.Diagnostics())
	}
	recovered = true
	if h, err := l.Holder(ctx); err != nil || h != writer {
		t.Errorf("after both faults the VIP is on %q (%v), want it still on %s", h, err, writer)
	}
}
