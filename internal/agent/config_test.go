package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
)

func TestAgentConfig(t *testing.T) {
	c, err := config.Parse([]byte(""))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Agent
	if a.Listen != ":9201" || a.HTTPListen != ":9200" || a.Interval.Duration != time.Second || a.StaleAfter.Duration != 3*time.Second ||
		a.MaxLag.Duration != time.Minute || a.FullWeightLag.Duration != time.Second || a.MinWeight != 10 ||
		a.Maintenance != "drain" || a.MaxConns != 256 || a.IOTimeout.Duration != 2*time.Second {
		t.Fatalf("defaults: %+v", a)
	}
	if d := config.Default().Agent; d.Listen != ":9201" || d.HTTPListen != ":9200" {
		t.Fatalf("built-in defaults: %+v", d)
	}
	c, err = config.Parse([]byte("[agent]\nlisten = \"\"\nhttp_listen = \"127.0.0.1:8080\"\ninterval = \"500ms\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Agent.Listen != "" || c.Agent.StaleAfter.Duration != 1500*time.Millisecond {
		t.Fatalf("listen = \"\" must disable, stale_after follows interval: %+v", c.Agent)
	}
	for bad, want := range map[string]string{
		"maintenance = \"ready\"":                 "agent.maintenance",
		"listen = \"9201\"":                       "agent.listen",
		"listen = \":1\"\nhttp_listen = \":1\"":   "both",
		"interval = \"1ms\"":                      "agent.interval",
		"interval = \"2s\"\nstale_after = \"1s\"": "agent.stale_after",
		"max_lag = \"-1s\"":                       "agent.max_lag",
		"full_weight_lag = \"2m\"":                "agent.full_weight_lag",
		"min_weight = 101":                        "agent.min_weight",
		"max_conns = -1":                          "agent.max_conns",
		"io_timeout = \"-1s\"":                    "agent.io_timeout",
		"colour = \"red\"":                        "unknown key",
	} {
		if _, err := config.Parse([]byte("[agent]\n" + bad + "\n")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error about %s", bad, err, want)
		}
	}
}

// TestReload: a new configuration changes the answers of a running server.
func TestReload(t *testing.T) {
	cfg := testConfig(t, "socket = \"/nonexistent\"", "")
	srv := NewServer(cfg, discardLog())
	srv.Poller.state.Store(&State{Snapshot: &probe.Snapshot{ReadOnly: true, Replicas: []probe.Replica{replica("Yes", true, i64(0))}}, At: time.Now()})
	if err := state.Dir(cfg.StateDir).SetMaintenance(true, "", "test"); err != nil {
		t.Fatal(err)
	}
	if a := srv.Answer(Request{Role: RoleReader}, time.Now()); a.Verdict != Drain {
		t.Fatalf("before reload: %v", a.Verdict)
	}
	cfg2 := testConfig(t, "socket = \"/nonexistent\"", "maintenance = \"maint\"")
	srv.SetConfig(cfg2) // other state_dir: no maintenance there
	if a := srv.Answer(Request{Role: RoleReader}, time.Now()); a.Verdict != Up {
		t.Fatalf("after reload to a new state_dir: %v", a.Verdict)
	}
	state.Dir(cfg2.StateDir).SetMaintenance(true, "", "test")
	if a := srv.Answer(Request{Role: RoleReader}, time.Now()); a.Verdict != Maint {
		t.Fatalf("after reload to maintenance=maint: %v", a.Verdict)
	}
}
