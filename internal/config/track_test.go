package config

import (
	"strings"
	"testing"
	"time"
)

func TestTrackDefaults(t *testing.T) {
	c, err := Parse([]byte("state_dir = \"/srv/vg/node1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Agent
	// The file follows state_dir: two nodes on one machine (the lab) get
	// a file each without a key of their own.
	if a.TrackFile != "/srv/vg/node1/mysql.track" {
		t.Fatalf("track_file = %q", a.TrackFile)
	}
	if a.TrackInterval.Duration != 200*time.Millisecond || a.TrackTimeout.Duration != 150*time.Millisecond ||
		a.UnresponsiveAfter.Duration != 1400*time.Millisecond || a.TrackStaleAfter.Duration != 2*time.Second {
		t.Fatalf("unexpected defaults: %+v", a)
	}
	if n := a.TrackFall(); n != 7 {
		t.Fatalf("TrackFall() = %d, want 7 polls of 200ms for 1.4s", n)
	}
	off, err := Parse([]byte("[agent]\ntrack_file = \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if off.Agent.TrackFile != "" {
		t.Fatalf("track_file = \"\" must disable the fast path, got %q", off.Agent.TrackFile)
	}
}

func TestTrackFall(t *testing.T) {
	for _, tc := range []struct {
		after, interval time.Duration
		want            int
	}{
		{time.Second, 200 * time.Millisecond, 5},
		{1001 * time.Millisecond, 200 * time.Millisecond, 6}, // rounded up: never less than the tolerance
		{400 * time.Millisecond, 200 * time.Millisecond, 2},
		{3 * time.Second, time.Second, 3},
	} {
		a := Agent{UnresponsiveAfter: Duration{tc.after}, TrackInterval: Duration{tc.interval}}
		if got := a.TrackFall(); got != tc.want {
			t.Errorf("unresponsive_after %s / track_interval %s: %d polls, want %d", tc.after, tc.interval, got, tc.want)
		}
	}
}

func TestTrackErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"relative file", "[agent]\ntrack_file = \"run/x\"\n", `agent.track_file "run/x" must be a clean absolute path`},
		{"directory", "[agent]\ntrack_file = \"/run/x/\"\n", "clean absolute path"},
		{"unclean", "[agent]\ntrack_file = \"/run/../x\"\n", "clean absolute path"},
		{"timeout over interval", "[agent]\ntrack_timeout = \"300ms\"\n", `agent.track_timeout "300ms" must be positive and at most agent.track_interval "200ms"`},
		{"one poll tolerance", "[agent]\nunresponsive_after = \"300ms\"\n", `agent.unresponsive_after "300ms" must be at least twice agent.track_interval "200ms"`},
		{"stale too soon", "[agent]\ntrack_stale_after = \"400ms\"\n", `agent.track_stale_after "400ms" must be longer than twice`},
		{"tiny interval", "[agent]\ntrack_interval = \"1ms\"\ntrack_timeout = \"1ms\"\n", "agent.track_interval must be at least 10ms"},
		{"explicit 0", "[agent]\nunresponsive_after = \"0s\"\n", "agent.unresponsive_after is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}
