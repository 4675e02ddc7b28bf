package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/lab/loadev"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// LoadOptions tune the client's load.
type LoadOptions struct {
	// Writers per path (VIP and HAProxy). Default 1.
	Writers int
	// IdleVIP and IdleProxy are idle long-lived connections to hold.
	IdleVIP, IdleProxy int
	// Pause between a writer's writes. Default 10ms.
	Pause time.Duration
	// Direct, when set, names a node whose own address slow statements
	// may use (SlowVia "direct"), as applications configured with node
	// addresses do.
	Direct string
}

// Load is a running vgload in the client namespace.
type Load struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	acked  string
	done   chan struct{}
	events chan loadev.Event // slow events, for SlowResult

	mu      sync.Mutex
	last    loadev.Event // latest tick
	summary *loadev.Event
	errs    []string
	stderr  strings.Builder
}

var loadSeq int

// StartLoad starts the load generator writing through the VIP and HAProxy.
func (l *Lab) StartLoad(ctx context.Context, o LoadOptions) (*Load, error) {
	if o.Writers == 0 {
		o.Writers = 1
	}
	if o.Pause == 0 {
		o.Pause = 10 * time.Millisecond
	}
	loadSeq++
	dir := filepath.Join(l.Dir, "client")
	pw := filepath.Join(dir, "app.pass")
	if err := os.WriteFile(pw, []byte(mariadbtest.AppPassword+"\n"), 0o600); err != nil {
		return nil, err
	}
	runID := fmt.Sprintf("r%d-%d", time.Now().Unix()%100000, loadSeq)
	ld := &Load{acked: filepath.Join(dir, runID+".acked"), done: make(chan struct{}), events: make(chan loadev.Event, 16)}
	argv := append(l.Net.Wrap("client"), filepath.Join(l.Bin, "vgload"),
		"--vip", fmt.Sprintf("%s:%d", VIP, MySQLPort),
		"--proxy", fmt.Sprintf("%s:%d", ProxyAddr, WriterPort),
		"--user", mariadbtest.AppUser, "--password-file", pw, "--db", mariadbtest.Database,
		"--run-id", runID, "--writers", strconv.Itoa(o.Writers),
		"--idle-vip", strconv.Itoa(o.IdleVIP), "--idle-proxy", strconv.Itoa(o.IdleProxy),
		"--pause", o.Pause.String(), "--acked", ld.acked, "--tick", "100ms")
	if o.Direct != "" {
		argv = append(argv, "--direct", fmt.Sprintf("%s:%d", l.Nodes[o.Direct].Addr, MySQLPort))
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = &lockedWriter{mu: &ld.mu, w: &ld.stderr}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting vgload: %w", err)
	}
	ld.cmd, ld.stdin = cmd, stdin
	go ld.read(stdout)
	// Wait until both paths have acknowledged writes.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		e := ld.Last()
		if e.OK["vip"] >= 10 && e.OK["proxy"] >= 10 {
			return ld, nil
		}
		select {
		case <-ld.done:
			return nil, fmt.Errorf("vgload exited: %s", ld.stderrText())
		case <-time.After(100 * time.Millisecond):
		}
	}
	e := ld.Last()
	ld.Stop()
	return nil, fmt.Errorf("vgload: no steady writes within 20s (ok %v, errors %v, last %v) %s", e.OK, e.Err, e.LastErr, ld.stderrText())
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.w.Len() < 64<<10 {
		w.w.Write(p)
	}
	return len(p), nil
}

func (ld *Load) stderrText() string {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.stderr.String()
}

func (ld *Load) read(r io.Reader) {
	defer close(ld.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var e loadev.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue
		}
		ld.mu.Lock()
		switch e.Type {
		case "tick":
			ld.last = e
		case "summary":
			ld.summary = &e
		case "error":
			ld.errs = append(ld.errs, e.Msg)
		}
		ld.mu.Unlock()
		if e.Type == "slow" {
			select {
			case ld.events <- e:
			default:
			}
		}
	}
	_ = ld.cmd.Wait()
}

// Last returns the latest tick.
func (ld *Load) Last() loadev.Event {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.last
}

// Slow starts one slow autocommit INSERT ... SELECT ..., SLEEP(secs)
// through the VIP. Its outcome arrives on SlowResults.
func (ld *Load) Slow(secs float64) error {
	_, err := fmt.Fprintf(ld.stdin, "slow %g\n", secs)
	return err
}

// SlowVia is Slow through the given path: "vip", "proxy", or "direct"
// (LoadOptions.Direct).
func (ld *Load) SlowVia(secs float64, path string) error {
	_, err := fmt.Fprintf(ld.stdin, "slow %g %s\n", secs, path)
	return err
}

// SlowRetry is Slow, retried by the client after a failure until it
// succeeds or meets its own row as a duplicate key.
func (ld *Load) SlowRetry(secs float64) error {
	_, err := fmt.Fprintf(ld.stdin, "slow-retry %g\n", secs)
	return err
}

// SlowResults delivers the outcome of each slow statement.
func (ld *Load) SlowResults() <-chan loadev.Event { return ld.events }

// LoadResult is what a load run ended with.
type LoadResult struct {
	Summary loadev.Event
	Acked   []string // the acknowledged keys
	Acks    []Ack    // the same writes, with who acknowledged them and when
	Errors  []string // vgload's own error events (idle connections, ...)
}

// Ack is one acknowledged write: the server that committed it (the
// INSERT's own RETURNING) and when the client received the answer.
type Ack struct {
	Key    string
	Server int
	At     time.Time
}

// parseAcks reads vgload's --acked file: "KEY SERVER_ID UNIX_NANOS" lines.
func parseAcks(data string) ([]Ack, error) {
	var out []Ack
	for i, line := range strings.Split(data, "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("acknowledged writes, line %d: %q: want KEY SERVER_ID UNIX_NANOS", i+1, line)
		}
		id, err1 := strconv.Atoi(f[1])
		ns, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("acknowledged writes, line %d: %w", i+1, err)
		}
		out = append(out, Ack{Key: f[0], Server: id, At: time.Unix(0, ns)})
	}
	return out, nil
}

// MaxGap is the longest window without any successful write.
func (r LoadResult) MaxGap() time.Duration { return secs(r.Summary.MaxGap) }

// PathGap is the longest window without a successful write on one path.
func (r LoadResult) PathGap(path string) time.Duration { return secs(r.Summary.PathMaxGap[path]) }

func secs(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// Stop ends the load and returns its summary and acknowledged keys.
func (ld *Load) Stop() (LoadResult, error) {
	_, _ = io.WriteString(ld.stdin, "stop\n")
	_ = ld.stdin.Close()
	select {
	case <-ld.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-ld.cmd.Process.Pid, syscall.SIGKILL)
		<-ld.done
		return LoadResult{}, fmt.Errorf("vgload did not stop within 30s")
	}
	ld.mu.Lock()
	sum, errs := ld.summary, append([]string(nil), ld.errs...)
	ld.mu.Unlock()
	if sum == nil {
		return LoadResult{}, fmt.Errorf("vgload ended without a summary: %s", ld.stderrText())
	}
	b, err := os.ReadFile(ld.acked)
	if err != nil {
		return LoadResult{}, fmt.Errorf("reading acknowledged keys: %w", err)
	}
	acks, err := parseAcks(string(b))
	if err != nil {
		return LoadResult{}, err
	}
	if len(acks) != sum.Acked {
		return LoadResult{}, fmt.Errorf("vgload reported %d acknowledged writes but wrote %d keys", sum.Acked, len(acks))
	}
	keys := make([]string, len(acks))
	for i, a := range acks {
		keys[i] = a.Key
	}
	return LoadResult{Summary: *sum, Acked: keys, Acks: acks, Errors: errs}, nil
}

// WaitWrites waits until writes on both paths succeed on the server with
// serverID, counted after the tick seen at call time.
func (ld *Load) WaitWrites(ctx context.Context, serverID int, limit time.Duration) error {
	base := ld.Last()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		e := ld.Last()
		if e.Server["vip"] == serverID && e.Server["proxy"] == serverID &&
			e.OK["vip"] > base.OK["vip"] && e.OK["proxy"] > base.OK["proxy"] {
			return nil
		}
		select {
		case <-ld.done:
			return fmt.Errorf("vgload exited: %s", ld.stderrText())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	e := ld.Last()
	return fmt.Errorf("writes did not resume on server %d within %s (servers %v, last errors %v)", serverID, limit, e.Server, e.LastErr)
}
