// Package ops holds the operator's actions on the pair as a whole: reading
// both nodes (this one as agentcheck and mysqlcheck read it, the peer
// through its agentcheck's status document) and a planned switchover.
//
// The decisions — may a switchover start, has it completed, how long were
// writes unavailable — are pure functions over status documents and
// timestamps, tested by table; the loops around them only read and wait.
package ops

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/vipguard/vipguard/internal/agent"
	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/nodestatus"
)

// Pair is both nodes as read now, and what is wrong with the pair.
type Pair struct {
	Local *nodestatus.Status `json:"local"`
	// Peer is nil when it could not be read; PeerError says why.
	Peer *nodestatus.Status `json:"peer"`
	// PeerConfigured says [peer] host is set: a peer that cannot even be
	// located is then as unknown as one that does not answer.
	PeerConfigured bool     `json:"peer_configured"`
	PeerAddr       string   `json:"peer_agent,omitempty"`
	PeerError      string   `json:"peer_error,omitempty"`
	Problems       []string `json:"problems"`
	// LocalAgent is this node's agentcheck daemon's address, and
	// LocalAgentError why it did not answer there ("" when it did): the
	// answers above are computed here, HAProxy asks the daemon.
	LocalAgent      string `json:"local_agent,omitempty"`
	LocalAgentError string `json:"local_agent_error,omitempty"`
}

// ReadLocal reads this node once: the server as agentcheck polls it, the
// state files, and, when witnesses is set, the witnesses as mysqlcheck
// asks them.
func ReadLocal(ctx context.Context, cfg *config.Config, witnesses bool) *nodestatus.Status {
	srv := agent.NewServer(cfg, slog.New(slog.DiscardHandler))
	var w *check.Witness
	if witnesses {
		asked := make(chan *check.Witness, 1)
		wctx, cancel := context.WithTimeout(ctx, cfg.Check.Timeout.Duration)
		defer cancel()
		go func() { asked <- check.AskWitnesses(wctx, cfg) }()
		srv.Poller.PollOnce(ctx)
		w = <-asked
	} else {
		srv.Poller.PollOnce(ctx)
	}
	st := srv.NodeStatus(time.Now(), w)
	return &st
}

// ReadPair reads both nodes at once; the peer's read is bounded by timeout.
func ReadPair(ctx context.Context, cfg *config.Config, timeout time.Duration, witnesses bool) *Pair {
	p := &Pair{PeerConfigured: cfg.Peer.Host != ""}
	type peerRes struct {
		st  *nodestatus.Status
		err error
	}
	peer := make(chan peerRes, 1)
	addr, aerr := nodestatus.PeerAddress(cfg)
	if aerr == nil {
		p.PeerAddr = addr
		go func() {
			st, err := nodestatus.Fetch(ctx, addr, timeout)
			peer <- peerRes{st, err}
		}()
	}
	daemon := make(chan error, 1)
	if host, port, err := net.SplitHostPort(cfg.Agent.HTTPListen); err == nil {
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		p.LocalAgent = net.JoinHostPort(host, port)
		go func() {
			_, err := nodestatus.Fetch(ctx, p.LocalAgent, timeout)
			daemon <- err
		}()
	} else {
		daemon <- nil
	}
	p.Local = ReadLocal(ctx, cfg, witnesses)
	if err := <-daemon; err != nil {
		p.LocalAgentError = err.Error()
	}
	if aerr != nil {
		p.PeerError = aerr.Error()
	} else if r := <-peer; r.err != nil {
		p.PeerError = r.err.Error()
	} else {
		p.Peer = r.st
	}
	p.Problems = []string{}
	if p.PeerConfigured {
		// A single node has nothing to judge as a pair.
		p.Problems = append(p.Problems, nodestatus.PairProblems(p.Local, p.Peer)...)
	}
	return p
}
