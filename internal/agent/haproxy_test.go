package agent

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// haproxyStat runs "show stat" on the admin socket and returns the fields
// of one server.
type haproxy struct {
	t    *testing.T
	sock string
}

func (h *haproxy) cmd(c string) string {
	h.t.Helper()
	conn, err := net.DialTimeout("unix", h.sock, time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(conn, "%s\n", c)
	b, _ := io.ReadAll(conn)
	return string(b)
}

func (h *haproxy) server(px, sv string) map[string]string {
	h.t.Helper()
	sc := bufio.NewScanner(strings.NewReader(h.cmd("show stat")))
	var cols []string
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# ") {
			cols = strings.Split(strings.TrimPrefix(line, "# "), ",")
			continue
		}
		f := strings.Split(line, ",")
		if len(f) >= 2 && f[0] == px && f[1] == sv {
			m := map[string]string{}
			for i, c := range cols {
				if i < len(f) {
					m[c] = f[i]
				}
			}
			return m
		}
	}
	h.t.Fatalf("server %s/%s not in show stat", px, sv)
	return nil
}

// waitState waits until status and weight of the server are as wanted.
func (h *haproxy) waitState(status, weight string, limit time.Duration) map[string]string {
	h.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		m := h.server("writer", "db")
		// With an agent configured, HAProxy says "DRAIN (agent)".
		if strings.HasPrefix(m["status"], status) && (weight == "" || m["weight"] == weight) {
			return m
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after %s: status %q weight %q (agent %q %q), want %q %q", limit, m["status"], m["weight"], m["agent_status"], m["agent_desc"], status, weight)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holdState checks the server keeps status for d (many agent polls).
func (h *haproxy) holdState(status string, d time.Duration) {
	h.t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if m := h.server("writer", "db"); !strings.HasPrefix(m["status"], status) {
			h.t.Fatalf("status changed to %q (agent %q), operator set %q", m["status"], m["agent_desc"], status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHAProxyAdminState runs real HAProxy against the agent and holds the
// admin-state policy: the agent's maintenance drains and comes back by
// itself, and an operator's CLI maint or drain is never undone.
func TestHAProxyAdminState(t *testing.T) {
	hp, err := exec.LookPath("haproxy")
	if err != nil {
		for _, p := range []string{"/usr/sbin/haproxy", "/usr/local/sbin/haproxy"} {
			if _, e := os.Stat(p); e == nil {
				hp, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv(mariadbtest.RequireEnv) != "" {
			t.Fatal("haproxy not found")
		}
		t.Skip("haproxy not found")
	}
	s := mariadbtest.Start(t, mariadbtest.Options{ServerID: 6})
	cfg := socketConfig(t, s, "")
	mustExec(t, s, "SET GLOBAL read_only=0")
	dir := state.Dir(cfg.StateDir)
	if err := dir.WriteOutcome(state.Outcome{Event: "MASTER", Phase: "done", Role: "writer"}); err != nil {
		t.Fatal(err)
	}
	_, agentAddr := startServer(t, cfg)
	_, agentPort, _ := net.SplitHostPort(agentAddr)
	fport, err := mariadbtest.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}

	tmp := t.TempDir()
	h := &haproxy{t: t, sock: filepath.Join(tmp, "admin.sock")}
	conf := fmt.Sprintf(`global
    stats socket %s level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout check 1s
listen writer
    bind 127.0.0.1:%d
    server db 127.0.0.1:%d weight 100 check inter 100ms agent-check agent-port %s agent-inter 100ms agent-send "writer\n" on-marked-down shutdown-sessions
`, h.sock, fport, s.Port, agentPort)
	cfgPath := filepath.Join(tmp, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hp, "-db", "-f", cfgPath)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(h.sock); err == nil {
			break
		}
		if i > 100 {
			t.Fatalf("haproxy did not start:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	m := h.waitState("UP", "100", 3*time.Second)
	t.Logf("writer: %s weight %s, agent %q (%s)", m["status"], m["weight"], m["last_agt"], m["agent_desc"])

	// agentcheck maint on: weight 0 (a drain), and back when off.
	if err := dir.SetMaintenance(true, "test", "test"); err != nil {
		t.Fatal(err)
	}
	m = h.waitState(m["status"], "0", 2*time.Second)
	t.Logf("maint on: %s weight %s, agent %q (%s)", m["status"], m["weight"], m["last_agt"], m["agent_desc"])
	if err := dir.SetMaintenance(false, "", ""); err != nil {
		t.Fatal(err)
	}
	h.waitState("UP", "100", 2*time.Second)

	// The operator's maint on the HAProxy CLI stays, through many agent
	// polls and through agentcheck's own maintenance going on and off.
	h.cmd("set server writer/db state maint")
	h.waitState("MAINT", "", time.Second)
	h.holdState("MAINT", time.Second)
	dir.SetMaintenance(true, "both", "test")
	h.holdState("MAINT", 500*time.Millisecond)
	dir.SetMaintenance(false, "", "")
	h.holdState("MAINT", time.Second)
	h.cmd("set server writer/db state ready")
	h.waitState("UP", "100", 2*time.Second)

	// Same for the operator's drain.
	h.cmd("set server writer/db state drain")
	m = h.waitState("DRAIN", "", time.Second)
	h.holdState("DRAIN", time.Second)
	h.cmd("set server writer/db state ready")
	h.waitState("UP", "100", 2*time.Second)

	// Health: a read-only node is marked down at once, and up again.
	mustExec(t, s, "SET GLOBAL read_only=1")
	m = h.waitState("DOWN", "", 2*time.Second)
	t.Logf("read_only=ON: %s, agent %q (%s)", m["status"], m["last_agt"], m["agent_desc"])
	mustExec(t, s, "SET GLOBAL read_only=0")
	h.waitState("UP", "100", 3*time.Second)
}
