package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Paths in the example files that the lab replaces with its own. Every one
// must be present in the examples: if an example changes so that one is
// gone, rendering fails instead of silently running something else.
const (
	exampleMysqlcheck = "/usr/libexec/vipguard/mysqlcheck"
	exampleConfig     = "/etc/vipguard/vipguard.toml"
	exampleNotify     = "/usr/libexec/vipguard/notify"
	exampleNotifyLine = `notify "/usr/libexec/vipguard/notify -c /etc/vipguard/vipguard.toml"`
	exampleStatsSock  = "/run/haproxy/admin.sock"
	exampleTrackFile  = `file "/var/lib/vipguard/mysql.track"`
)

// KeepalivedParams are what differs between the example and a lab node.
type KeepalivedParams struct {
	Self, Peer string // "db1"/"db2"
	Interface  string
	Mysqlcheck string // path of the mysqlcheck binary
	Config     string // vipguard.toml of this node
	Notify     string // path of the notify program run with -c Config
	// NotifyLine, when set, replaces the example's whole notify line (the
	// lab's stand-in notify, which takes other arguments).
	NotifyLine string
	// TrackFile is the node's agentcheck track file ([agent] track_file:
	// mysql.track in its state_dir). Never the host's own path: two lab
	// nodes watching one file would fail together.
	TrackFile string
}

// RenderKeepalived turns the example keepalived.conf into one node's file.
func RenderKeepalived(example []byte, p KeepalivedParams) ([]byte, error) {
	s := string(example)
	self, peer := hostAddr[p.Self], hostAddr[p.Peer]
	if self == "" || peer == "" {
		return nil, fmt.Errorf("unknown nodes %q/%q", p.Self, p.Peer)
	}
	var err error
	need := func(old, new string) {
		if err != nil {
			return
		}
		if !strings.Contains(s, old) {
			err = fmt.Errorf("example keepalived.conf no longer contains %q: update the lab with it", old)
			return
		}
		s = strings.ReplaceAll(s, old, new)
	}
	// The example is db1's file; on db2 the two unicast addresses swap.
	need("unicast_src_ip "+DB1Addr, "unicast_src_ip @SELF@")
	need("unicast_peer {\n        "+DB2Addr, "unicast_peer {\n        @PEER@")
	s = strings.ReplaceAll(strings.ReplaceAll(s, "@SELF@", self), "@PEER@", peer)
	need(exampleMysqlcheck, p.Mysqlcheck)
	if p.NotifyLine != "" {
		need(exampleNotifyLine, p.NotifyLine)
	} else {
		need(exampleNotifyLine, exampleNotifyLine) // present, uncommented
		need(exampleNotify+" ", p.Notify+" ")
	}
	need(exampleConfig, p.Config)
	need(exampleTrackFile, fmt.Sprintf("file %q", p.TrackFile))
	if err != nil {
		return nil, err
	}
	ifRE := regexp.MustCompile(`\b(interface|dev) eth0\b`)
	if !ifRE.MatchString(s) {
		return nil, fmt.Errorf("example keepalived.conf names no interface eth0")
	}
	s = ifRE.ReplaceAllString(s, "${1} "+p.Interface)
	return []byte(s), nil
}

// exampleReplicaServer is the read replica's server line in the
// example's reader backend, commented out as shipped.
const exampleReplicaServer = "    # server " + ReplicaHost + " " + DB3Addr + ":3306 "

// RenderHAProxy turns the example haproxy.cfg into the lab's: only the stats
// socket moves into the run directory (the addresses are the lab's already)
// and, with replica, the read replica's server line is uncommented.
func RenderHAProxy(example []byte, statsSock string, replica bool) ([]byte, error) {
	s := string(example)
	for _, must := range []string{exampleStatsSock, DB1Addr + ":3306", DB2Addr + ":3306", "\n" + exampleReplicaServer,
		fmt.Sprintf("bind %s:%d", ProxyAddr, WriterPort), fmt.Sprintf("bind %s:%d", ProxyAddr, ReaderPort),
		fmt.Sprintf("agent-port %d", AgentPort), `agent-send "writer\n"`, `agent-send "reader\n"`,
		"on-marked-down shutdown-sessions"} {
		if !strings.Contains(s, must) {
			return nil, fmt.Errorf("example haproxy.cfg no longer contains %q: update the lab with it", must)
		}
	}
	if replica {
		s = strings.Replace(s, "\n"+exampleReplicaServer, "\n"+strings.Replace(exampleReplicaServer, "# ", "", 1), 1)
	}
	return []byte(strings.ReplaceAll(s, exampleStatsSock, statsSock)), nil
}

func readExample(root, rel string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(root, "examples", rel))
	if err != nil {
		return nil, fmt.Errorf("reading example: %w", err)
	}
	return b, nil
}
