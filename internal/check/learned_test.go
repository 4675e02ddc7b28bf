package check

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
	"github.com/vipguard/vipguard/testsupport/nettest"
)

// saveLearned writes a learned-witness list holding ip, qualified.
func saveLearned(t *testing.T, dir string, ip string) {
	t.Helper()
	now := time.Now()
	data, err := witness.Encode([]witness.Learned{{IP: netip.MustParseAddr(ip), FirstSeen: now.Add(-time.Minute), LastSeen: now, Asks: 60}})
	if err != nil {
		t.Fatal(err)
	}
	if err := state.Dir(dir).WriteLearnedWitnesses(data); err != nil {
		t.Fatal(err)
	}
}

// With no witness configured, the proxies agentcheck learned are asked
// like configured witnesses: one that answers keeps the node fit, silence
// makes it unfit, and with none learned the node is fit but says it is
// unguarded.
func TestRealLearnedWitnesses(t *testing.T) {
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 1})
	silent, _ := nettest.Silent(t)
	_, silentPort, _ := net.SplitHostPort(silent)
	_, refusedPort, _ := net.SplitHostPort(nettest.Refusing(t))

	unguarded := cfgFor(t, s, "")
	v := expect(t, unguarded, true, "no witness: this node cannot tell a dead peer")
	if v.Status != Warning {
		t.Fatalf("unguarded status %v", v.Status)
	}

	reached := cfgFor(t, s, "[check]\nlearned_witness_port = "+refusedPort+"\n")
	saveLearned(t, reached.StateDir, "127.0.0.1")
	if v := expect(t, reached, true, "writer"); v.Status != OK {
		t.Fatalf("learned witness answers: %+v", v)
	}

	cut := cfgFor(t, s, "[check]\nlearned_witness_port = "+silentPort+"\n")
	saveLearned(t, cut.StateDir, "127.0.0.1")
	expect(t, cut, false, "isolated: no witness answered (127.0.0.1:"+silentPort)

	// Configured witnesses win over learned ones.
	both := cfgFor(t, s, "[check]\nlearned_witness_port = "+silentPort+"\n")
	// The file refuses loopback witnesses; set after loading.
	both.Check.Witnesses = []string{"127.0.0.1:" + refusedPort}
	saveLearned(t, both.StateDir, "127.0.0.1")
	expect(t, both, true, "writer")

	garbled := cfgFor(t, s, "")
	if err := os.MkdirAll(garbled.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(garbled.StateDir, "witnesses.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	expect(t, garbled, false, "cannot tell: learned witnesses")
}
