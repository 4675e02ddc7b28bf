package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vipguard/vipguard/internal/config"
)

// lingerTime bounds the wait for the client's close after the answer was
// written (see finish).
const lingerTime = 100 * time.Millisecond

// Server answers checks on any number of listeners, and on single streams
// (inetd mode), from the Poller's cached state.
type Server struct {
	Log     *slog.Logger
	Poller  *Poller
	Metrics *Metrics
	// Tracker keeps keepalived's track file (track.go); serve runs it.
	Tracker *Tracker

	// NoFastPath serves TCP listeners through net.Conn only (tests).
	NoFastPath bool
	// send replaces the fast path's send (tests: a socket that takes
	// only part of an answer).
	send func(fd int, b []byte) (int, error)

	files           atomic.Pointer[Files]
	lastHandOffWarn atomic.Int64 // unix ns, see handOff
	cfg             atomic.Pointer[config.Config]
	pol             atomic.Pointer[Policy]
	allow           atomic.Pointer[[]netip.Prefix]
	allowMetrics    allowMetrics
	learn           atomic.Pointer[learner]
	// learnLoopback lets loopback clients be learned as witnesses
	// (tests: every client there is local).
	learnLoopback bool
	sem           chan struct{}
	wg            sync.WaitGroup
	mu            sync.Mutex
	conns         map[net.Conn]struct{}

	// busy holds, per fast-path accept loop, since when it has been
	// answering one connection (unix ns; 0 when waiting): see Answering.
	busyMu   sync.Mutex
	busy     map[*atomic.Int64]struct{}
	selfBusy atomic.Bool
}

// NewServer builds a server (and its poller) for cfg. max_conns and the
// listen addresses are fixed for its lifetime; everything else follows
// SetConfig.
func NewServer(cfg *config.Config, log *slog.Logger) *Server {
	s := &Server{Log: log, Metrics: &Metrics{},
		sem: make(chan struct{}, cfg.Agent.MaxConns), conns: map[net.Conn]struct{}{},
		busy: map[*atomic.Int64]struct{}{}}
	s.SetConfig(cfg)
	s.Poller = &Poller{Config: s.Config, Log: log, Metrics: s.Metrics,
		keeper: newSemiSyncKeeper(s.Config, s.files.Load, log, s.Metrics)}
	s.Tracker = &Tracker{Config: s.Config, Files: s.files.Load, Log: log}
	return s
}

// SetConfig switches to a new configuration (SIGHUP).
func (s *Server) SetConfig(cfg *config.Config) {
	pol := PolicyFrom(cfg)
	allow := cfg.Agent.AllowList()
	s.cfg.Store(cfg)
	s.pol.Store(&pol)
	s.allow.Store(&allow)
	s.Metrics.SetConfig(cfg)
	if f := s.files.Load(); f == nil || string(f.dir) != cfg.StateDir {
		s.files.Store(NewFiles(cfg.StateDir))
	}
}

// Config returns the configuration in force.
func (s *Server) Config() *config.Config { return s.cfg.Load() }

// Policy returns the answer policy in force.
func (s *Server) Policy() Policy { return *s.pol.Load() }

// Input gathers what an answer is decided on, as of now.
func (s *Server) Input(now time.Time) Input {
	pol := s.pol.Load()
	files := s.files.Load()
	in := Input{Poll: s.Poller.Current(), Now: now, LoopAlive: s.Poller.LoopAlive(now, pol.StaleAfter)}
	in.Maintenance, in.MaintErr = files.Maintenance()
	in.Outcome, in.OutcomeErr = files.Outcome()
	if s.Tracker != nil {
		in.Silent = s.Tracker.Silent(now, s.cfg.Load().Agent.TrackStaleAfter.Duration)
	}
	return in
}

// Answer decides one agent or HTTP check.
func (s *Server) Answer(req Request, now time.Time) Answer {
	if req.Role == RoleUnknown {
		return Answer{Role: RoleUnknown, Verdict: Down, Weight: -1, Age: -1, Reason: req.Problem}
	}
	return Decide(*s.pol.Load(), req.Role, s.Input(now), req.MaxLag)
}

// Respond writes the answer to req.
func (s *Server) Respond(w io.Writer, req Request) error {
	var rb respBuf
	_, err := w.Write(s.appendResponse(&rb, req))
	return err
}

// respBuf holds the buffers an answer is rendered in; the fast path keeps
// one per listener, so a check allocates next to nothing.
type respBuf struct{ out, body []byte }

const (
	jsonType       = "application/json"
	prometheusType = "text/plain; version=0.0.4; charset=utf-8"
)

// appendResponse renders the whole answer to req (the agent line, or the
// HTTP response) in rb and returns it.
func (s *Server) appendResponse(rb *respBuf, req Request) []byte {
	now := time.Now()
	if req.Kind == KindAgent {
		a := s.Answer(req, now)
		s.Metrics.countCheck(req.Kind, a)
		rb.out = a.appendAgentLine(rb.out[:0])
		return rb.out
	}
	status, ctype := 0, jsonType
	switch {
	case req.Status != 0:
		status, rb.body = req.Status, appendErrorBody(rb.body[:0], req.Problem)
	case req.StatusDoc:
		status, rb.body = 200, s.appendStatusJSON(rb.body[:0], now)
	case req.Role == RoleMetrics:
		status, ctype, rb.body = 200, prometheusType, s.appendLearnMetrics(s.allowMetrics.appendTo(s.Metrics.Write(s.Input(now), s.Policy())))
	default:
		a := s.Answer(req, now)
		s.Metrics.countCheck(req.Kind, a)
		status, rb.body = a.HTTPStatus(), a.appendJSON(rb.body[:0])
	}
	rb.out = appendHTTP(rb.out[:0], req, status, ctype, rb.body)
	return rb.out
}

// Serve accepts connections on l until ctx ends or l is closed (a TCP
// listener: until ctx ends). TCP listeners take the fast path (fastpath.go).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	if tl, ok := l.(*net.TCPListener); ok && !s.NoFastPath && s.serveFast(ctx, tl) {
		return nil
	}
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and friends: wait, as net/http does, instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.Log.Warn("accept failed", "addr", l.Addr().String(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		backoff = 0
		if !s.allowConn(c) {
			s.allowMetrics.refused.Add(1)
			c.Close()
			continue
		}
		s.spawn(c, func() { s.serveConn(c, nil) })
	}
}

// spawn runs serve for c in its own goroutine, within max_conns.
func (s *Server) spawn(c net.Conn, serve func()) {
	select {
	case s.sem <- struct{}{}:
	default:
		// Over the cap: close at once rather than queue. HAProxy treats
		// an unreachable agent as "no change".
		s.Metrics.rejected[rejectLimit].Add(1)
		c.Close()
		return
	}
	s.track(c, true)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		defer s.track(c, false)
		serve()
	}()
}

func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	if add {
		s.conns[c] = struct{}{}
		s.Metrics.open.Add(1)
	} else {
		delete(s.conns, c)
		s.Metrics.open.Add(-1)
	}
	s.mu.Unlock()
}

// ServeConn answers the one check on c and closes it. The deadline covers
// the whole exchange, so a slow or silent client costs at most io_timeout.
func (s *Server) ServeConn(c net.Conn) { s.serveConn(c, nil) }

// serveConn is ServeConn for a request whose first bytes were read already.
func (s *Server) serveConn(c net.Conn, read []byte) {
	defer c.Close()
	timeout := s.cfg.Load().Agent.IOTimeout.Duration
	_ = c.SetDeadline(time.Now().Add(timeout))
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(read), c), 512)
	req, err := ReadRequest(br)
	if err == nil && req.Kind == KindAgent {
		s.learnFromConn(c)
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.Metrics.rejected[rejectTimeout].Add(1)
		} else {
			s.Metrics.rejected[rejectBad].Add(1)
		}
		return
	}
	if err := s.Respond(c, req); err != nil {
		return
	}
	// Always linger: whether the client sent more than the request cannot
	// be told from what was read (a request can end exactly where a read
	// did), and the general path serves only the unusual connections.
	finish(c)
}

// finish closes our side for writing and waits briefly for the client's
// close: closing with unread request bytes (a body, a pipelined request)
// would send a RST that can destroy the answer before the client read it.
// A client that closes once it has the answer (HAProxy) ends it at once.
func finish(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return
	}
	if cw.CloseWrite() != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, c, 4<<10)
}

// Answering is the self-check behind the systemd watchdog: checks are
// being answered when no accept loop has spent longer than bound on one
// connection, and a liveness answer, decided through the same code as a
// client's (state files read, poll loop asked), comes within bound and
// says up. A wedged responder must be restarted, not kept alive by pings.
func (s *Server) Answering(bound time.Duration) error {
	now := time.Now()
	s.busyMu.Lock()
	var stuck time.Duration
	for b := range s.busy {
		if at := b.Load(); at != 0 {
			stuck = max(stuck, now.Sub(time.Unix(0, at)))
		}
	}
	s.busyMu.Unlock()
	if stuck > bound {
		return fmt.Errorf("an accept loop has been answering one connection for %s", stuck.Round(time.Millisecond))
	}
	if !s.selfBusy.CompareAndSwap(false, true) {
		return errors.New("the previous self-check has not returned")
	}
	done := make(chan Answer, 1)
	go func() {
		defer s.selfBusy.Store(false)
		done <- s.Answer(Request{Kind: KindAgent, Role: RoleLiveness}, time.Now())
	}()
	select {
	case a := <-done:
		if a.Verdict != Up {
			return fmt.Errorf("liveness answers %s: %s", a.Verdict, a.Reason)
		}
		return nil
	case <-time.After(bound):
		return fmt.Errorf("a liveness answer took longer than %s", bound)
	}
}

// trackBusy registers an accept loop's busy clock for Answering.
func (s *Server) trackBusy(b *atomic.Int64, add bool) {
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	if add {
		s.busy[b] = struct{}{}
	} else {
		delete(s.busy, b)
	}
}

// Shutdown waits up to timeout for the connections being served, then
// closes what is left. The listeners must be closed already.
func (s *Server) Shutdown(timeout time.Duration) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(timeout):
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	<-done
}

// ServeStream answers one check read from r and written to w (inetd mode:
// stdin and stdout). It polls MySQL once first, since nothing is cached.
func (s *Server) ServeStream(ctx context.Context, r io.Reader, w io.Writer) error {
	req, err := ReadRequest(bufio.NewReaderSize(r, 512))
	if err != nil {
		return err
	}
	if req.Role != RoleUnknown && req.Status == 0 {
		s.Poller.PollOnce(ctx)
	}
	return s.Respond(w, req)
}
