package doctor

import (
	"fmt"
	"os"
	"strings"

	"github.com/vipguard/vipguard/internal/agent"
)

// HAProxyPath is where HAProxy reads its configuration.
const HAProxyPath = "/etc/haproxy/haproxy.cfg"

// haproxySections are the keywords that open a section of haproxy.cfg.
var haproxySections = map[string]bool{"global": true, "defaults": true, "frontend": true, "backend": true,
	"listen": true, "peers": true, "resolvers": true, "userlist": true, "mailers": true, "program": true,
	"http-errors": true, "ring": true, "cache": true}

// haproxyServer is one server line of a backend or listen section.
type haproxyServer struct {
	section, name string
	words         []string
}

// parseHAProxyServers lists the server lines of haproxy.cfg, with the
// section each belongs to.
func parseHAProxyServers(data []byte) []haproxyServer {
	var out []haproxyServer
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if haproxySections[f[0]] {
			section = strings.Join(f, " ")
			continue
		}
		if f[0] == "server" && len(f) >= 3 {
			out = append(out, haproxyServer{section: section, name: f[1], words: f[2:]})
		}
	}
	return out
}

func (s haproxyServer) has(w string) bool {
	for _, x := range s.words {
		if x == w {
			return true
		}
	}
	return false
}

func (s haproxyServer) value(key string) (string, bool) {
	for i, x := range s.words {
		if x == key && i+1 < len(s.words) {
			return s.words[i+1], true
		}
	}
	return "", false
}

// HAProxyInput is what the HAProxy checks look at.
type HAProxyInput struct {
	Path string
	Data []byte
	// Err: no file (fs.ErrNotExist: HAProxy runs elsewhere, skipped).
	Err error
	// AgentPort is the port of [agent] listen.
	AgentPort string
}

// CheckHAProxy checks the servers that follow agentcheck: the agent port,
// a role word agentcheck knows in agent-send, and, for writers, that
// HAProxy closes the sessions of a server the agent marks down.
func CheckHAProxy(in HAProxyInput) []Result {
	const n, c = "host", "haproxy.agent_check"
	if in.Err != nil {
		if os.IsNotExist(in.Err) {
			return []Result{bad(Skip, n, c, "run vipguard doctor on the HAProxy hosts too, or name the file with --haproxy-cfg", "%s does not exist here", in.Path)}
		}
		return []Result{bad(Fail, n, c, "", "cannot read %s: %v", in.Path, in.Err)}
	}
	var rs []Result
	checked := 0
	for _, s := range parseHAProxyServers(in.Data) {
		if !s.has("agent-check") {
			continue
		}
		checked++
		where := fmt.Sprintf("%s server %s", s.section, s.name)
		if p, ok := s.value("agent-port"); !ok || p != in.AgentPort {
			rs = append(rs, bad(Fail, n, c, "agent-port "+in.AgentPort+" (the port of [agent] listen)",
				"%s: agent-port %q is not agentcheck's %s", where, p, in.AgentPort))
			continue
		}
		send, _ := s.value("agent-send")
		word := strings.TrimSuffix(strings.Trim(send, `"'`), `\n`)
		req := agent.ParseAgentLine([]byte(word))
		if req.Role == agent.RoleUnknown {
			rs = append(rs, bad(Fail, n, c, `agent-send "writer\n" (or "reader\n")`,
				"%s: agent-send %q: %s", where, send, req.Problem))
			continue
		}
		if req.Role == agent.RoleWriter && !strings.Contains(strings.Join(s.words, " "), "on-marked-down shutdown-sessions") {
			rs = append(rs, bad(Warn, n, c, "on-marked-down shutdown-sessions",
				"%s: a writer marked down keeps its sessions, which write to a node that was fenced", where))
			continue
		}
		rs = append(rs, ok(n, c, "%s asks agentcheck %q on port %s", where, word, in.AgentPort))
	}
	if checked == 0 {
		return []Result{bad(Warn, n, c, "agent-check agent-port "+in.AgentPort+` agent-send "writer\n" on the servers (examples/haproxy/haproxy.cfg)`,
			"no server in %s uses agent-check: HAProxy does not follow agentcheck, and no witness is learned", in.Path)}
	}
	return rs
}
