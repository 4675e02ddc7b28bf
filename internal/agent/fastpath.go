package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// The fast path for TCP listeners.
//
// A health check is one short request, one short answer and a close. Taken
// as a net.Conn, each connection also costs an epoll registration and its
// removal, getsockname, five setsockopt calls (keep-alive, no-delay), a
// goroutine and a deadline timer: measured here, that was more than half of
// the daemon's CPU per check. So the accept loop takes each connection as a
// bare descriptor, reads what has already arrived (never waiting), and when
// that is one complete request it answers with a single non-blocking send
// and closes: accept4, recvfrom, sendmsg, close.
//
// Everything else goes to the general path (serveConn, with the bytes
// already read): a request not yet arrived or incomplete (slow clients,
// slowloris), bytes after the request (a body, a pipelined request: closing
// on unread bytes would reset the connection), an answer the socket did not
// take whole. The general path applies max_conns, io_timeout and the linger.

// fastBufSize bounds what the fast path reads at once; longer requests
// take the general path, which accepts up to MaxHTTPHead.
//
// The answer is rendered on the accept goroutine. It reads memory and
// stats two files in state_dir, which must therefore be on a local disk
// (the package's /var/lib/vipguard): on a hung filesystem every check on
// the listener would wait, and the watchdog's self-check (Answering),
// seeing the loop stuck, stops pinging so that systemd restarts us.
const fastBufSize = 2048

// deferAccept is how long the kernel holds a connection whose request has
// not arrived (TCP_DEFER_ACCEPT, whole seconds) before queueing it anyway.
const deferAccept = time.Second

// Reasons a connection left the fast path, for /metrics.
type slowReason int

const (
	slowPartial   slowReason = iota // request not (completely) there yet
	slowExtra                       // bytes after the request
	slowShortSend                   // answer not taken whole
	numSlowReasons
)

var slowNames = [numSlowReasons]string{"partial_request", "extra_bytes", "short_send"}

// errWouldBlock ends the bytes that had arrived when the fast path looked.
var errWouldBlock = errors.New("rest of the request not arrived yet")

// arrived reads the bytes already received, then reports errWouldBlock.
type arrived struct{ b []byte }

func (a *arrived) Read(p []byte) (int, error) {
	if len(a.b) == 0 {
		return 0, errWouldBlock
	}
	n := copy(p, a.b)
	a.b = a.b[n:]
	return n, nil
}

// fastConn is the per-listener state of the fast path, reused for every
// connection (one accept loop per listener, so no locking).
type fastConn struct {
	buf [fastBufSize]byte
	in  arrived
	br  *bufio.Reader
	rb  respBuf
}

func newFastConn() *fastConn {
	fc := &fastConn{}
	fc.br = bufio.NewReaderSize(&fc.in, fastBufSize)
	return fc
}

// serveFast runs the accept loop on a duplicate of l's socket. It returns
// false when the duplicate cannot be had, and the caller serves l the
// general way.
func (s *Server) serveFast(ctx context.Context, l *net.TCPListener) bool {
	f, err := l.File() // a dup; non-blocking, so Go's poller waits on it
	if err != nil {
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	// Let the kernel queue a connection for accept only once its request
	// has arrived (or after deferAccept): the fast path then finds the request
	// there instead of handing a slow connection on. Checks always speak
	// first, so nothing waits on it; where the option is refused, the
	// general path covers the difference.
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, int(deferAccept/time.Second))
	})
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	defer f.Close()
	fc := newFastConn()
	var busy atomic.Int64
	s.trackBusy(&busy, true)
	defer s.trackBusy(&busy, false)
	var backoff time.Duration
	for {
		var nfd int
		var sa syscall.Sockaddr
		var aerr error
		err := rc.Read(func(fd uintptr) bool {
			nfd, sa, aerr = syscall.Accept4(int(fd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
			return aerr != syscall.EAGAIN
		})
		if err != nil {
			// Closed: ctx ended (or the process is going away).
			return true
		}
		switch aerr {
		case nil:
			backoff = 0
			if !s.allowSockaddr(sa) {
				s.allowMetrics.refused.Add(1)
				syscall.Close(nfd)
				continue
			}
			busy.Store(time.Now().UnixNano())
			s.answerFast(fc, nfd, sa)
			busy.Store(0)
			continue
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		}
		// EMFILE and friends: wait, as net/http does, instead of spinning.
		backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
		s.Log.Warn("accept failed", "addr", l.Addr().String(), "err", aerr, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return true
		}
	}
}

// answerFast serves one accepted descriptor, handing it to the general
// path when it cannot finish at once.
func (s *Server) answerFast(fc *fastConn, fd int, sa syscall.Sockaddr) {
	n, _, err := syscall.Recvfrom(fd, fc.buf[:], syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		n = 0
	case err != nil:
		// Reset before it asked anything.
		s.Metrics.rejected[rejectBad].Add(1)
		syscall.Close(fd)
		return
	case n == 0:
		// Closed before a complete request.
		s.Metrics.rejected[rejectBad].Add(1)
		syscall.Close(fd)
		return
	}
	got := fc.buf[:n]
	if n == len(fc.buf) {
		// More may be waiting in the kernel: a long request, or bytes
		// after it that closing now would answer with a reset.
		s.handOff(fd, slowPartial, got, nil)
		return
	}
	fc.in.b = got
	fc.br.Reset(&fc.in)
	req, err := ReadRequest(fc.br)
	switch {
	case errors.Is(err, errWouldBlock):
		s.handOff(fd, slowPartial, got, nil)
		return
	case err != nil:
		s.Metrics.rejected[rejectBad].Add(1)
		syscall.Close(fd)
		return
	case fc.br.Buffered() > 0 || len(fc.in.b) > 0:
		s.handOff(fd, slowExtra, got, nil)
		return
	}
	if req.Kind == KindAgent {
		s.learnFromSockaddr(sa)
	}
	ans := s.appendResponse(&fc.rb, req)
	send := sendAnswer
	if s.send != nil {
		send = s.send
	}
	sent, err := send(fd, ans)
	switch {
	case err == nil && sent == len(ans):
		syscall.Close(fd)
	case err == nil || err == syscall.EAGAIN || err == syscall.EINTR:
		s.handOff(fd, slowShortSend, nil, ans[max(sent, 0):])
	default:
		// The client went away; nothing more to say.
		syscall.Close(fd)
	}
}

// sendAnswer sends without waiting and without SIGPIPE.
func sendAnswer(fd int, b []byte) (int, error) {
	return syscall.SendmsgN(fd, b, nil, nil, syscall.MSG_DONTWAIT|syscall.MSG_NOSIGNAL)
}

// handOff passes fd to the general path: with the request bytes read so
// far, or, when the answer was begun, with the rest of the answer to send.
// The bytes are copied: the fast path's buffers are reused at once.
func (s *Server) handOff(fd int, why slowReason, read, unsent []byte) {
	s.Metrics.slow[why].Add(1)
	f := os.NewFile(uintptr(fd), "check")
	c, err := net.FileConn(f) // a dup registered with Go's poller
	f.Close()
	if err != nil {
		// Out of descriptors, most likely: counted, and logged at most
		// once a second rather than once per connection.
		s.Metrics.rejected[rejectLimit].Add(1)
		if now := time.Now().UnixNano(); now-s.lastHandOffWarn.Load() > int64(time.Second) {
			s.lastHandOffWarn.Store(now)
			s.Log.Warn("cannot hand a check connection over", "err", err)
		}
		return
	}
	read, unsent = bytes.Clone(read), bytes.Clone(unsent)
	s.spawn(c, func() {
		if unsent != nil {
			s.finishSend(c, unsent)
			return
		}
		s.serveConn(c, read)
	})
}

// finishSend sends the rest of an answer within io_timeout and closes.
func (s *Server) finishSend(c net.Conn, rest []byte) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(s.cfg.Load().Agent.IOTimeout.Duration))
	_, _ = c.Write(rest)
}
