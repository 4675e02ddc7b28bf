package semisync

import (
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
)

func TestPromise(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	active := Sighting{At: now.Add(-2 * time.Second), PeerWritable: true, Enabled: true, On: true, Clients: 1, WaitFor: 1,
		Timeout: 10 * time.Second, SelfAcking: true}
	with := func(f func(*Sighting)) *Sighting { s := active; f(&s); return &s }
	cases := []struct {
		name     string
		pairUses bool
		s        *Sighting
		want     state.SemiSyncCase
		why      string
	}{
		{"async pair, no sighting", false, nil, state.SemiSyncAsync, "does not use semi-sync"},
		{"async pair, peer never waited", false, with(func(s *Sighting) { s.Enabled, s.On = false, false }), state.SemiSyncAsync, "does not use"},
		{"semi-sync pair, no sighting", true, nil, state.SemiSyncUnknown, "no sighting"},
		// Both sides off everywhere by now, but the old writer had fallen
		// back: the pair did use semi-sync, and it vouches for nothing.
		{"peer's source side switched off after it fell back", false, with(func(s *Sighting) { s.Enabled, s.On, s.FallBacks = false, false, 1 }), state.SemiSyncFallenBack, "did not wait for acknowledgements"},
		{"peer committed without an acknowledgement", false, with(func(s *Sighting) { s.Enabled, s.On, s.Unacked = false, false, 4 }), state.SemiSyncFallenBack, "did not wait"},
		{"active, this node acknowledging", true, &active, state.SemiSyncKept, "every acknowledged write is in this node's relay log"},
		// The peer seen waiting for acknowledgements is enough to know the
		// pair uses semi-sync, whatever this node's own settings.
		{"active seen, local side off", false, &active, state.SemiSyncKept, "seen 2s ago"},
		{"fallen back", true, with(func(s *Sighting) { s.On, s.FallBacks, s.Unacked = false, 3, 17 }), state.SemiSyncFallenBack, "fallen back to asynchronous replication (3 fall-back(s), 17 commits"},
		{"no client left", true, with(func(s *Sighting) { s.Clients = 0 }), state.SemiSyncFallenBack, "fallen back"},
		{"a corrupt negative client count vouches for nothing", true, with(func(s *Sighting) { s.Clients = -1 }), state.SemiSyncFallenBack, "fallen back"},
		{"source side off", true, with(func(s *Sighting) { s.Enabled = false }), state.SemiSyncFallenBack, "did not wait for acknowledgements"},
		{"this node not acknowledging", true, with(func(s *Sighting) { s.SelfAcking = false }), state.SemiSyncFallenBack, "this node was not acknowledging"},
		{"another replica may acknowledge", true, with(func(s *Sighting) { s.Clients = 2 }), state.SemiSyncFallenBack, "2 replicas acknowledged the old writer and it waited for 1"},
		{"two replicas, both waited for", true, with(func(s *Sighting) { s.Clients, s.WaitFor = 2, 2 }), state.SemiSyncKept, ""},
		{"sighting as old as the timeout", true, with(func(s *Sighting) { s.At = now.Add(-10 * time.Second) }), state.SemiSyncUnknown, "not younger than its semi-sync timeout 10s"},
		{"no timeout known", true, with(func(s *Sighting) { s.Timeout = 0 }), state.SemiSyncUnknown, "timeout"},
		{"sighting from the future", true, with(func(s *Sighting) { s.At = now.Add(time.Minute) }), state.SemiSyncUnknown, "in the future"},
		{"peer was read-only", true, with(func(s *Sighting) { s.PeerWritable = false }), state.SemiSyncUnknown, "read-only"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, why := Promise(tc.pairUses, tc.s, now)
			if got != tc.want || !strings.Contains(why, tc.why) {
				t.Fatalf("Promise = %s %q, want %s containing %q", got, why, tc.want, tc.why)
			}
			if got.Safe() != (tc.want == state.SemiSyncKept || tc.want == state.SemiSyncAsync) {
				t.Fatalf("%s: Safe() = %v", got, got.Safe())
			}
		})
	}
}

func TestRole(t *testing.T) {
	src := probe.SemiSync{Available: true, Source: true, Replica: true, ReplicaEnabled: true}
	with := func(f func(*probe.SemiSync)) probe.SemiSync { s := src; f(&s); return s }
	cases := []struct {
		name string
		in   RoleInput
		want Action
	}{
		{"writer, peer acknowledging: wait for it", RoleInput{Managed: true, Local: with(func(s *probe.SemiSync) { s.Clients = 1 }), Writable: true, Writer: true, PeerAcking: true}, EnableSource},
		{"writer, a client counted but the peer not seen acknowledging", RoleInput{Managed: true, Local: with(func(s *probe.SemiSync) { s.Clients = 1 }), Writable: true, Writer: true}, Keep},
		{"writer, no replica: commits would wait for nobody", RoleInput{Managed: true, Local: src, Writable: true, Writer: true}, Keep},
		{"writer already waiting", RoleInput{Managed: true, Local: with(func(s *probe.SemiSync) { s.Clients, s.SourceEnabled = 1, true }), Writable: true, Writer: true}, Keep},
		{"writable but not promoted by notify", RoleInput{Managed: true, Local: with(func(s *probe.SemiSync) { s.Clients = 1 }), Writable: true, PeerAcking: true}, Keep},
		{"standby waiting for acknowledgements", RoleInput{Managed: true, Local: with(func(s *probe.SemiSync) { s.SourceEnabled = true }), Standby: true}, DisableSource},
		{"read-only during a promotion", RoleInput{Managed: true, Local: with(func(s *probe.SemiSync) { s.SourceEnabled = true })}, Keep},
		{"standby already off", RoleInput{Managed: true, Local: src, Standby: true}, Keep},
		{"not managed", RoleInput{Local: with(func(s *probe.SemiSync) { s.SourceEnabled = true }), Standby: true}, Keep},
		{"no source side (MySQL without the plugin)", RoleInput{Managed: true, Local: probe.SemiSync{Available: true, Replica: true, Clients: 1}, Writable: true, Writer: true, PeerAcking: true}, Keep},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Role(tc.in); got != tc.want {
				t.Fatalf("Role = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestSelfAcking(t *testing.T) {
	on := probe.SemiSync{ReplicaOn: true}
	cases := []struct {
		name  string
		local probe.SemiSync
		ch    *probe.Replica
		want  bool
	}{
		{"receiver connected, applier stopped", on, &probe.Replica{IORunning: probe.IOYes}, true},
		{"receiver connecting", on, &probe.Replica{IORunning: probe.IOConnecting, SQLRunning: true}, false},
		{"replica side off", probe.SemiSync{}, &probe.Replica{IORunning: probe.IOYes, SQLRunning: true}, false},
		{"no channel", on, nil, false},
	}
	for _, tc := range cases {
		if got := SelfAcking(tc.local, tc.ch); got != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
}

func TestSightingRoundTrip(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 123, time.UTC)
	s := NewSighting(at, 7, true, probe.SemiSync{SourceEnabled: true, SourceOn: true, Clients: 1, Timeout: 10 * time.Second, FallBacks: 2}, true)
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSighting(b)
	if err != nil || *got != s {
		t.Fatalf("round trip: %+v %v, want %+v", got, err, s)
	}
	for _, bad := range []string{"", "{", `{"at":"x"}`, `{}`, `[]`} {
		if _, err := ParseSighting([]byte(bad)); err == nil {
			t.Errorf("ParseSighting(%q): no error", bad)
		}
	}
}
