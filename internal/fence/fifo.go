package fence

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"
)

// FIFOQuiet is how long ServeFIFO keeps reading after SIGTERM when no STOP
// line comes.
var FIFOQuiet = 3 * time.Second

type queued struct {
	ev  Event
	gen uint64
}

// ServeFIFO reads keepalived notify_fifo lines from r and handles them in
// order. The reader never waits for a run: every line is taken off the pipe
// at once (a full pipe makes keepalived drop events) and its generation is
// recorded on arrival, so a newer line supersedes a running promotion
// immediately. Queued events already superseded are skipped.
//
// When ctx ends (SIGTERM), reading goes on: keepalived writes the STOP lines
// after it signals the FIFO script. ServeFIFO returns once a STOP or
// DELETED has been handled after that, at EOF, or after FIFOQuiet without
// a line.
func (e *Engine) ServeFIFO(ctx context.Context, r io.Reader) error {
	q := &fifoQueue{lastMsg: time.Now(), wake: make(chan struct{}, 1)}
	go e.readFIFO(ctx, r, q)
	var stopSeen bool
	for {
		next, done, quiet := q.pop()
		if done {
			return nil
		}
		if next == nil {
			if ctx.Err() != nil && (stopSeen || quiet > FIFOQuiet) {
				return nil
			}
			select {
			case <-q.wake:
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if !e.DryRun {
			if ok, err := e.dir().Current(next.gen); err == nil && !ok {
				e.Log.Info("queued event superseded: skipped", "event", next.ev.State, "gen", next.gen)
				continue
			}
		}
		err := e.Handle(ctx, next.ev, next.gen)
		if err != nil && !errors.Is(err, ErrSuperseded) {
			e.Log.Error("event failed", "event", next.ev.State, "err", err)
		}
		if ctx.Err() != nil && (next.ev.State == "STOP" || next.ev.State == "DELETED") {
			stopSeen = true
		}
	}
}

// fifoQueue hands recorded events from the reader to the handler.
type fifoQueue struct {
	mu      sync.Mutex
	queue   []queued
	eof     bool
	lastMsg time.Time
	wake    chan struct{}
}

func (q *fifoQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *fifoQueue) push(it queued) {
	q.mu.Lock()
	q.queue = append(q.queue, it)
	q.lastMsg = time.Now()
	q.mu.Unlock()
	q.poke()
}

func (q *fifoQueue) close() {
	q.mu.Lock()
	q.eof = true
	q.mu.Unlock()
	q.poke()
}

// pop takes the oldest event; done when the FIFO ended and nothing is
// left; quiet is how long since keepalived last wrote.
func (q *fifoQueue) pop() (next *queued, done bool, quiet time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queue) > 0 {
		it := q.queue[0]
		q.queue = q.queue[1:]
		next = &it
	}
	return next, q.eof && next == nil, time.Since(q.lastMsg)
}

// readFIFO reads keepalived's lines, records each relevant event at once
// (a newer event must supersede a running one without waiting for it) and
// queues it for the handler.
func (e *Engine) readFIFO(ctx context.Context, r io.Reader, q *fifoQueue) {
	defer q.close()
	br := bufio.NewReaderSize(r, 4096)
	for {
		line, err := readLine(br)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				e.Log.Error("reading fifo", "err", err)
			}
			return
		}
		if line == "" {
			continue
		}
		ev, ok, err := ParseFIFOLine(line)
		if err != nil {
			e.Log.Warn("unreadable fifo line ignored", "line", line, "err", err)
			continue
		}
		if !ok || ev.Action() == Ignore {
			continue
		}
		if !e.Relevant(ev) {
			e.Log.Info("event for another instance: ignored", "instance", ev.Name)
			continue
		}
		// Bounded by Bump's own deadline; the pipe keeps buffering
		// meanwhile (64 KiB, hundreds of lines).
		gen, err := e.Bump(context.WithoutCancel(ctx), ev)
		if err != nil {
			e.Log.Error("cannot record event", "event", ev, "err", err)
		}
		q.push(queued{ev, gen})
	}
}

// maxLine is the longest line kept; keepalived's are far shorter.
const maxLine = 1024

// readLine returns the next line without its newline. A longer line than
// maxLine is consumed and returned empty (ignored): a garbage line must
// never stop the reading, or keepalived's pipe fills and it drops events.
func readLine(br *bufio.Reader) (string, error) {
	var buf []byte
	long := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !long {
			buf = append(buf, chunk...)
			if len(buf) > maxLine {
				long, buf = true, nil
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil && len(buf) == 0:
			return "", err
		}
		if long {
			return "", nil
		}
		return strings.TrimRight(string(buf), "\r\n"), nil
	}
}
