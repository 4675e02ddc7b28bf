package nodestatus

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
)

func TestRole(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ro := &probe.Snapshot{ReadOnly: true}
	rw := &probe.Snapshot{}
	fit := check.Verdict{Fit: true, Reason: "standby: read-only, replicating"}
	unfit := check.Verdict{Reason: "maintenance mode is on"}
	promoted := &state.Outcome{Event: "MASTER", Phase: state.PhaseDone, Role: state.RoleWriter, At: at}
	fenced := &state.Outcome{Event: "BACKUP", Phase: state.PhaseDone, Role: state.RoleStandby, At: at, FinalPosition: "gtid=0-1-5"}
	for _, c := range []struct {
		name    string
		err     error
		s       *probe.Snapshot
		v       check.Verdict
		o       *state.Outcome
		role    string
		whyPart string
	}{
		{"unreadable", errors.New("down"), nil, check.Verdict{Reason: "mysqld down"}, nil, RoleUnknown, "mysqld down"},
		{"writer", nil, rw, fit, promoted, RoleWriter, "promoted by notify (MASTER at 2026-01-02T03:04:05Z)"},
		{"writable unpromoted", nil, rw, fit, nil, RoleWriter, "has not completed a promotion"},
		{"writable in maintenance", nil, rw, unfit, promoted, RoleWriter, "promoted"},
		{"unfit standby", nil, ro, unfit, fenced, RoleUnfit, "maintenance"},
		{"fenced", nil, ro, fit, fenced, RoleFenced, "final position gtid=0-1-5"},
		{"standby", nil, ro, fit, nil, RoleStandby, "replicating"},
		{"after a failed fence", nil, ro, fit, &state.Outcome{Phase: state.PhaseFailed, Role: state.RoleStandby}, RoleStandby, ""},
	} {
		role, why := Role(c.err, c.s, c.v, c.o)
		if role != c.role || !strings.Contains(why, c.whyPart) {
			t.Errorf("%s: %s %q", c.name, role, why)
		}
	}
}

func TestPairProblems(t *testing.T) {
	node := func(host, role string, held bool) *Status {
		return &Status{Host: host, Role: role, MySQL: &MySQL{}, VIP: &VIP{Held: held}}
	}
	for _, c := range []struct {
		name string
		a, b *Status
		want string
	}{
		{"fine", node("a", RoleWriter, true), node("b", RoleFenced, false), ""},
		{"two writers", node("a", RoleWriter, true), node("b", RoleWriter, false), "BOTH NODES ARE WRITABLE"},
		{"no writer", node("a", RoleStandby, false), node("b", RoleUnfit, false), "no writer: both nodes are read-only; no node holds the VIP"},
		{"vip on a reader", node("a", RoleFenced, true), node("b", RoleWriter, false), "a holds the VIP but is not writable"},
		{"vip twice", node("a", RoleWriter, true), node("b", RoleStandby, true), "both nodes hold the VIP"},
		{"unknown", node("a", RoleWriter, true), nil, "one node's state is unknown"},
	} {
		got := strings.Join(PairProblems(c.a, c.b), "; ")
		if !strings.HasPrefix(got, c.want) || (c.want == "") != (got == "") {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestPeerAddress(t *testing.T) {
	cfg := config.Default()
	if _, err := PeerAddress(cfg); err == nil {
		t.Error("no peer: no error")
	}
	cfg.Peer.Host = "192.0.2.12"
	if a, err := PeerAddress(cfg); a != "192.0.2.12:9200" || err != nil {
		t.Errorf("derived: %q %v", a, err)
	}
	cfg.Peer.Agent = "198.51.100.1:80"
	if a, _ := PeerAddress(cfg); a != "198.51.100.1:80" {
		t.Errorf("explicit: %q", a)
	}
	cfg.Peer.Agent, cfg.Agent.HTTPListen = "", ""
	if _, err := PeerAddress(cfg); err == nil {
		t.Error("no http_listen: no error")
	}
}

func TestDecode(t *testing.T) {
	if _, err := Decode([]byte(`{"format": 2}`)); err == nil || !strings.Contains(err.Error(), "format 2") {
		t.Errorf("other format: %v", err)
	}
	if _, err := Decode([]byte(`<html>`)); err == nil {
		t.Error("garbage decoded")
	}
	st, err := Decode([]byte(`{"format": 1, "role": "writer", "mysql": {"read_only": false, "replicas": []}, "notify": {"phase": "done", "role": "writer"}}`))
	if err != nil || !st.Writer() {
		t.Errorf("writer document: %+v %v", st, err)
	}
}
