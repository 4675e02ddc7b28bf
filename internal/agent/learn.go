package agent

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
)

// Learning the witnesses: every host that sends an agent-check (HAProxy
// speaks that protocol, monitoring scrapes HTTP) is recorded in a
// witness.Book, which Learn saves to the state directory for mysqlcheck
// and notify. Recording costs a map update under a mutex per check.

// learnSaveEvery bounds how stale the saved LastSeen times get while the
// set of witnesses does not change: they only matter for aging out after
// an hour, and a write per check interval would be wasted.
const learnSaveEvery = time.Minute

// learner is the server's witness book and what it last saved.
type learner struct {
	book      *witness.Book
	saved     atomic.Int64 // qualified witnesses in the last save
	saveFails atomic.Uint64
}

// newLearner loads what an earlier run saved. The node's own addresses,
// loopback (unless loopback: tests), the VIP and the peer are never
// witnesses: none of them is outside the pair.
func newLearner(cfg *config.Config, own []netip.Addr, loopback bool) (*learner, error) {
	exclude := map[netip.Addr]bool{}
	for _, a := range own {
		exclude[a.Unmap()] = true
	}
	for _, h := range []string{cfg.VIP.Address, cfg.Peer.Host} {
		if a, err := netip.ParseAddr(h); err == nil {
			exclude[a.Unmap()] = true
		}
	}
	var saved []witness.Learned
	data, err := state.Dir(cfg.StateDir).LearnedWitnesses()
	if err == nil && data != nil {
		saved, err = witness.Decode(data)
	}
	l := &learner{book: witness.NewBook(witness.DefaultRules, saved, func(a netip.Addr) bool {
		return exclude[a] || (a.IsLoopback() && !loopback)
	})}
	l.saved.Store(int64(len(witness.Witnesses(witness.DefaultRules, saved))))
	return l, err
}

// localAddrs lists the addresses of this host's interfaces.
func localAddrs() []netip.Addr {
	addrs, _ := net.InterfaceAddrs()
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}

// learnFromSockaddr records an agent-check from a bare accept's client.
func (s *Server) learnFromSockaddr(sa syscall.Sockaddr) {
	if l := s.learn.Load(); l != nil {
		if ip, ok := sockaddrIP(sa); ok {
			l.book.Observe(ip, time.Now())
		}
	}
}

// learnFromConn records an agent-check from a net.Conn's client.
func (s *Server) learnFromConn(c net.Conn) {
	if l := s.learn.Load(); l != nil {
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			l.book.Observe(a.AddrPort().Addr(), time.Now())
		}
	}
}

// Learn starts recording who asks and saves the book to the state
// directory whenever its witnesses change, and every learnSaveEvery,
// until ctx ends. A saved book that cannot be read is started afresh,
// and the next save replaces it.
func (s *Server) Learn(ctx context.Context) {
	cfg := s.Config()
	l, err := newLearner(cfg, localAddrs(), s.learnLoopback)
	if err != nil {
		s.Log.Warn("learned witnesses unreadable; learning them again", "err", err)
	}
	s.learn.Store(l)
	dir := state.Dir(cfg.StateDir)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			all, changed := l.book.Snapshot(now)
			if !changed && (len(all) == 0 || now.Sub(last) < learnSaveEvery) {
				continue
			}
			data, err := witness.Encode(all)
			if err == nil {
				err = dir.WriteLearnedWitnesses(data)
			}
			if err != nil {
				l.saveFails.Add(1)
				s.Log.Warn("cannot save the learned witnesses", "err", err)
				continue
			}
			last = now
			n := len(witness.Witnesses(witness.DefaultRules, all))
			if int64(n) != l.saved.Swap(int64(n)) {
				s.Log.Info("learned witnesses changed", "witnesses", witness.Witnesses(witness.DefaultRules, all))
			}
		}
	}
}

// appendLearnMetrics adds the witness gauges to a /metrics body.
func (s *Server) appendLearnMetrics(b []byte) []byte {
	configured := len(s.Config().Check.Witnesses)
	learned := int64(-1)
	if l := s.learn.Load(); l != nil {
		learned = l.saved.Load()
	}
	b = append(b, "# HELP vipguard_witnesses Witnesses this node asks before holding the VIP or opening writes, by source (learned: the proxies that agent-check it; -1 while not learning).\n"+
		"# TYPE vipguard_witnesses gauge\n"+
		"vipguard_witnesses{source=\"configured\"} "...)
	b = strconv.AppendInt(b, int64(configured), 10)
	b = append(b, "\nvipguard_witnesses{source=\"learned\"} "...)
	b = strconv.AppendInt(b, learned, 10)
	unguarded := 0
	if configured == 0 && learned <= 0 {
		unguarded = 1
	}
	b = append(b, "\n# HELP vipguard_unguarded 1 when this node has no witness at all: it cannot tell a dead peer from being cut off itself.\n"+
		"# TYPE vipguard_unguarded gauge\n"+
		"vipguard_unguarded "...)
	b = strconv.AppendInt(b, int64(unguarded), 10)
	return append(b, '\n')
}
