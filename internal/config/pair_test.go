package config

import (
	"strings"
	"testing"
)

// agent.pair becomes a Prometheus label value and a dashboard variable:
// names pass as written, anything needing escaping is refused.
func TestAgentPair(t *testing.T) {
	for _, ok := range []string{"", "orders", "orders-db.eu:1", "A_1", "7" + strings.Repeat("x", 63)} {
		c, err := Parse([]byte("[agent]\npair = \"" + ok + "\"\n"))
		if err != nil {
			t.Errorf("pair %q refused: %v", ok, err)
			continue
		}
		if c.Agent.Pair != ok {
			t.Errorf("pair %q read as %q", ok, c.Agent.Pair)
		}
	}
	for _, bad := range []string{"-orders", "orders db", `a"b`, `a\b`, "é", "a/b", "a,b", "8" + strings.Repeat("x", 64)} {
		// A literal string: the value reaches validation as written.
		_, err := Parse([]byte("[agent]\npair = '" + bad + "'\n"))
		if err == nil || !strings.Contains(err.Error(), "agent.pair") {
			t.Errorf("pair %q: got %v, want an agent.pair error", bad, err)
		}
	}
}
