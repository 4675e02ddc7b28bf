package doctor

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/nodestatus"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/witness"
)

// CheckWitnesses: a node that reaches no witness is unfit; one with none
// cannot tell a dead peer from its own isolation.
func CheckWitnesses(w *check.Witness) Result {
	const n, c = "host", "witnesses"
	switch {
	case w.Isolated():
		return bad(Fail, n, c, "make at least one witness reachable, or fix [check] witnesses", "%s", w.Describe())
	case w.Unguarded():
		return bad(Warn, n, c, "set [check] witnesses, or point HAProxy's agent-check at agentcheck so the proxies are learned", "%s", witness.NoWitnessWarning)
	}
	return ok(n, c, "%s", w.Describe())
}

// FileInfo is a file's owner and mode as stat saw it.
type FileInfo struct {
	Path string
	UID  uint32
	Mode fs.FileMode
	Err  error
}

// StatFile stats path without following a final symlink.
func StatFile(path string) FileInfo {
	fi := FileInfo{Path: path}
	st, err := os.Lstat(path)
	if err != nil {
		fi.Err = err
		return fi
	}
	fi.Mode = st.Mode()
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		fi.UID = s.Uid
	}
	return fi
}

// CheckStateDir: whoever can write to state_dir can set the maintenance
// flag or forge notify's outcome, which steer root-run tools.
func CheckStateDir(fi FileInfo, euid uint32) Result {
	const n, c = "host", "state_dir"
	switch {
	case errors.Is(fi.Err, fs.ErrNotExist):
		return bad(Warn, n, c, "mkdir -m 0755 "+fi.Path+" (the package creates /var/lib/vipguard)", "%s does not exist yet", fi.Path)
	case fi.Err != nil:
		return bad(Fail, n, c, "", "%s: %v", fi.Path, fi.Err)
	case !fi.Mode.IsDir():
		return bad(Fail, n, c, "make it a directory", "%s is not a directory", fi.Path)
	case fi.UID != 0 && fi.UID != euid:
		return bad(Fail, n, c, "chown root "+fi.Path, "%s is owned by uid %d", fi.Path, fi.UID)
	case fi.Mode.Perm()&0o022 != 0:
		return bad(Fail, n, c, "chmod go-w "+fi.Path, "%s is writable by group or others (mode %04o): anyone there can steer the tools", fi.Path, fi.Mode.Perm())
	}
	return ok(n, c, "%s mode %04o, owner uid %d", fi.Path, fi.Mode.Perm(), fi.UID)
}

// CheckConfigFile reports the configuration file; the loader already
// refused one that breaks the rules (owner, mode, symlink), so this names
// what it accepted.
func CheckConfigFile(fi FileInfo) Result {
	const n, c = "host", "config"
	if fi.Path == "" {
		return bad(Warn, n, c, "write "+config.DefaultPath+" (examples/vipguard.toml)", "no configuration file: built-in defaults")
	}
	if fi.Err != nil {
		return bad(Fail, n, c, "", "%s: %v", fi.Path, fi.Err)
	}
	return ok(n, c, "%s mode %04o, owner uid %d", fi.Path, fi.Mode.Perm(), fi.UID)
}

// CheckPeerAgent: status and switchover read the peer through its
// agentcheck.
func CheckPeerAgent(addr string, err error) Result {
	const n, c = "peer", "agentcheck"
	if err != nil {
		return bad(Fail, n, c, "run vipguard-agentcheck on the peer, admit this node in its [agent] allow, or set [peer] agent", "%v", err)
	}
	return ok(n, c, "%s%s answers", addr, nodestatus.Path)
}

// Options tune Run.
type Options struct {
	// KeepalivedConf is the file to check (default KeepalivedPath).
	KeepalivedConf string
	// HAProxyConf is HAProxy's (default HAProxyPath).
	HAProxyConf string
}

// Run reads everything and checks it: both servers at once, then the
// peer's agentcheck, the witnesses and this host's files.
func Run(ctx context.Context, cfg *config.Config, o Options) []Result {
	if o.KeepalivedConf == "" {
		o.KeepalivedConf = KeepalivedPath
	}
	if o.HAProxyConf == "" {
		o.HAProxyConf = HAProxyPath
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	peerCh := make(chan *Server, 1)
	if cfg.Peer.Host != "" {
		go func() { peerCh <- ReadServer(ctx, "peer", probe.PeerTarget(cfg), false) }()
	} else {
		peerCh <- nil
	}
	type agentRes struct {
		addr string
		err  error
	}
	agentCh := make(chan agentRes, 1)
	go func() {
		addr, err := nodestatus.PeerAddress(cfg)
		if err == nil {
			_, err = nodestatus.Fetch(ctx, addr, 3*time.Second)
		}
		agentCh <- agentRes{addr, err}
	}()
	wctx, wcancel := context.WithTimeout(ctx, cfg.Check.Timeout.Duration)
	defer wcancel()
	witnessCh := make(chan *check.Witness, 1)
	go func() { witnessCh <- check.AskWitnesses(wctx, cfg) }()

	t := probe.LocalTarget(cfg)
	local := ReadServer(ctx, "local", t, t.Host == "" || t.Host == "127.0.0.1" || t.Host == "::1" || t.Host == "localhost")
	peer := <-peerCh
	rs := CheckServers(local, peer, cfg.Heartbeat.Table)
	if cfg.Peer.Host != "" {
		a := <-agentCh
		rs = append(rs, CheckPeerAgent(a.addr, a.err))
	}
	rs = append(rs, CheckWitnesses(<-witnessCh))
	cf := FileInfo{}
	if p := cfg.Path(); p != "" {
		cf = StatFile(p)
	}
	rs = append(rs, CheckConfigFile(cf), CheckStateDir(StatFile(cfg.StateDir), uint32(os.Geteuid())))
	ki := KeepalivedInput{Path: o.KeepalivedConf, ConfigPath: cfg.Path(), CheckTimeout: cfg.Check.Timeout.Duration, Owners: StatPath}
	if ki.ConfigPath == "" {
		ki.ConfigPath = config.DefaultPath
	}
	if data, err := os.ReadFile(o.KeepalivedConf); err != nil {
		ki.Err = err
	} else {
		ki.Conf, ki.Err = ParseKeepalived(data)
	}
	rs = append(rs, CheckKeepalived(ki)...)
	hi := HAProxyInput{Path: o.HAProxyConf}
	if _, port, err := net.SplitHostPort(cfg.Agent.Listen); err == nil {
		hi.AgentPort = port
	}
	hi.Data, hi.Err = os.ReadFile(o.HAProxyConf)
	return append(rs, CheckHAProxy(hi)...)
}
