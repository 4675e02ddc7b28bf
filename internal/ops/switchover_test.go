package ops

import (
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/nodestatus"
)

func lag(n int64) *int64 { return &n }

func writer() *nodestatus.Status {
	return &nodestatus.Status{Host: "db1", Role: nodestatus.RoleWriter, Fit: true,
		MySQL:  &nodestatus.MySQL{ReadOnly: false, Replicas: []nodestatus.Replica{{IO: "Yes", SQL: true, Health: "streaming", Lag: lag(0)}}},
		VIP:    &nodestatus.VIP{Address: "192.0.2.100", Held: true},
		Notify: &nodestatus.Notify{Event: "MASTER", Phase: "done", Role: "writer"}}
}

func standby() *nodestatus.Status {
	return &nodestatus.Status{Host: "db2", Role: nodestatus.RoleFenced, Fit: true,
		MySQL:  &nodestatus.MySQL{ReadOnly: true, Replicas: []nodestatus.Replica{{IO: "Yes", SQL: true, Health: "streaming", Lag: lag(1)}}},
		VIP:    &nodestatus.VIP{Address: "192.0.2.100"},
		Notify: &nodestatus.Notify{Event: "BACKUP", Phase: "done", Role: "standby"}}
}

func TestPreflight(t *testing.T) {
	for _, c := range []struct {
		name      string
		mutate    func(l, p *nodestatus.Status)
		peerErr   string
		want      string // substring of the only refusal; "" none
		forceable bool
	}{
		{"fit", func(l, p *nodestatus.Status) {}, "", "", false},
		{"not the writer", func(l, p *nodestatus.Status) { l.Role = nodestatus.RoleStandby }, "", "not the writer", false},
		{"vip elsewhere", func(l, p *nodestatus.Status) { l.VIP.Held = false }, "", "does not hold the VIP", false},
		{"maintenance here", func(l, p *nodestatus.Status) { l.Maintenance.On = true }, "", "already on here", false},
		{"peer in maintenance", func(l, p *nodestatus.Status) { p.Maintenance.On = true }, "", "peer is in maintenance", true},
		{"peer unfit", func(l, p *nodestatus.Status) { p.Fit, p.Reason = false, "x" }, "", "peer is unfit", true},
		{"peer lags", func(l, p *nodestatus.Status) { p.MySQL.Replicas[0].Lag = lag(60) }, "", "lags 1m0s", true},
		{"peer lag unknown", func(l, p *nodestatus.Status) { p.MySQL.Replicas[0].Lag = nil }, "", "lag is unknown", true},
		{"peer broken", func(l, p *nodestatus.Status) { p.MySQL.Replicas[0].Health = "SQL thread stopped" }, "", "does not replicate", true},
	} {
		l, p := writer(), standby()
		c.mutate(l, p)
		rs := Preflight(l, p, c.peerErr, 10*time.Second)
		if c.want == "" {
			if len(rs) != 0 || Blocking(rs, false) {
				t.Errorf("%s: refused %v", c.name, rs)
			}
			continue
		}
		if len(rs) != 1 || !strings.Contains(rs[0].Reason, c.want) || rs[0].Forceable != c.forceable {
			t.Errorf("%s: %+v, want one %q forceable=%v", c.name, rs, c.want, c.forceable)
			continue
		}
		if !Blocking(rs, false) || Blocking(rs, true) == c.forceable {
			t.Errorf("%s: blocking wrong (forceable %v)", c.name, c.forceable)
		}
	}
	rs := Preflight(writer(), nil, "connection refused", 10*time.Second)
	if len(rs) != 1 || !rs[0].Forceable || !strings.Contains(rs[0].Reason, "connection refused") {
		t.Errorf("unreachable peer: %+v", rs)
	}
}

func TestJudge(t *testing.T) {
	began := time.Now()
	after := began.Add(2 * time.Second)
	promoted := func() *nodestatus.Status {
		p := writer()
		p.Host, p.Notify.At = "db2", after
		return p
	}
	fenced := func() *nodestatus.Status {
		l := standby()
		l.Host, l.Notify.At = "db1", after
		return l
	}
	for _, c := range []struct {
		name                         string
		local, peer                  *nodestatus.Status
		promoted, fenced, replicates bool
		failed                       string
	}{
		{"before", writer(), standby(), false, false, false, ""},
		{"done", fenced(), promoted(), true, true, true, ""},
		{"old fence does not count", func() *nodestatus.Status { l := fenced(); l.Notify.At = began.Add(-time.Minute); return l }(), promoted(), true, false, true, ""},
		{"peer unreachable", fenced(), nil, false, true, true, ""},
		{"not yet replicating", func() *nodestatus.Status { l := fenced(); l.MySQL.Replicas[0].Health = "starting"; return l }(), promoted(), true, true, false, ""},
		{"promotion refused", fenced(), func() *nodestatus.Status {
			p := standby()
			p.Notify = &nodestatus.Notify{Event: "MASTER", Phase: "failed", Role: "standby", Unfit: true, Reason: "gate", At: after}
			return p
		}(), false, true, true, "refused or failed the promotion"},
		{"fence failed", func() *nodestatus.Status { l := fenced(); l.Notify.Phase = "failed"; return l }(), promoted(), true, false, true, "fence here"},
	} {
		p := Judge(c.local, c.peer, began)
		if p.PeerPromoted != c.promoted || p.LocalFenced != c.fenced || p.LocalReplicating != c.replicates ||
			(c.failed == "") != (p.Failed == "") || !strings.Contains(p.Failed, c.failed) {
			t.Errorf("%s: %+v", c.name, p)
		}
		if p.Done() != (c.promoted && c.fenced && c.replicates) {
			t.Errorf("%s: Done %v", c.name, p.Done())
		}
	}
}

func TestLongestGap(t *testing.T) {
	t0 := time.Now()
	acks := []time.Time{t0, t0.Add(50 * time.Millisecond), t0.Add(2 * time.Second), t0.Add(2050 * time.Millisecond)}
	gap, from, to := LongestGap(acks)
	if gap != 1950*time.Millisecond || !from.Equal(acks[1]) || !to.Equal(acks[2]) {
		t.Errorf("gap %s %v %v", gap, from, to)
	}
	if gap, _, _ := LongestGap(acks[:1]); gap != 0 {
		t.Errorf("one write: %s", gap)
	}
	r := ProbeResult{Acked: 10, Found: 9, MaxGap: time.Second}
	if !strings.Contains(r.String(), "1 ACKNOWLEDGED WRITES MISSING") {
		t.Error(r.String())
	}
	if err := ValidProbeTable("db.t; DROP"); err == nil {
		t.Error("unsafe table name accepted")
	}
}
