package state

// Serialising notify runs and letting the newest event win.
//
// keepalived starts notify runs without waiting and without ordering, so two
// runs for one node can overlap and finish out of order. Two files order them:
//
//   - generation: a counter bumped by every event as it arrives, under a short
//     exclusive flock on generation.lock. A run remembers its number and is
//     superseded as soon as the file holds a larger one. Opening writes
//     re-checks the number while holding the same short lock, so an event
//     that arrives later always bumps after the check and then fences.
//   - run.lock: held for a whole run so that fences and promotions do not
//     interleave; a superseded holder gives it up within moments, and a fence
//     that cannot get it in time proceeds anyway (setting read_only=ON is
//     always safe).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/internal/safefile"
)

const (
	generationFile = "generation.json"
	generationLock = "generation.lock"
	runLock        = "run.lock"
)

// Generation is the newest event seen on this node.
type Generation struct {
	N     uint64    `json:"n"`
	Event string    `json:"event"`
	PID   int       `json:"pid"`
	At    time.Time `json:"at"`
}

// Lock is a held flock; Unlock releases it.
type Lock struct{ f *os.File }

// Unlock releases the lock (closing the file drops the flock).
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// lock takes an exclusive flock on name, polling until ctx ends. Polling
// (rather than a blocking flock) keeps every wait bounded by ctx.
func (d Dir) lock(ctx context.Context, name string) (*Lock, error) {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	p := filepath.Join(string(d), name)
	// Root creates this file: never where a planted symlink points, and
	// never a FIFO or device that would block or be something else.
	f, _, err := safefile.OpenRegular("lock file", p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &Lock{f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %q: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %q: %w", p, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// RunLock takes the per-node run lock, waiting until ctx ends.
func (d Dir) RunLock(ctx context.Context) (*Lock, error) { return d.lock(ctx, runLock) }

// GenLock takes the short generation lock. Hold it only for a bounded step.
func (d Dir) GenLock(ctx context.Context) (*Lock, error) { return d.lock(ctx, generationLock) }

// Generation reads the newest event; zero when none was recorded. A corrupt
// file is an error: callers treat it as "superseded" (the safe reading).
func (d Dir) Generation() (Generation, error) {
	data, err := readSmall(filepath.Join(string(d), generationFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Generation{}, nil
	}
	if err != nil {
		return Generation{}, err
	}
	var g Generation
	if err := json.Unmarshal(data, &g); err != nil {
		return Generation{}, fmt.Errorf("parsing %s: %w", generationFile, err)
	}
	return g, nil
}

// BumpGeneration records a new event and returns its number. A corrupt
// generation file is replaced: the new event is the newest by definition.
func (d Dir) BumpGeneration(ctx context.Context, event string) (Generation, error) {
	l, err := d.GenLock(ctx)
	if err != nil {
		return Generation{}, err
	}
	defer l.Unlock()
	g, _ := d.Generation()
	g = Generation{N: g.N + 1, Event: event, PID: os.Getpid(), At: time.Now().UTC()}
	data, err := json.Marshal(g)
	if err != nil {
		return Generation{}, err
	}
	if err := d.writeAtomic(generationFile, append(data, '\n')); err != nil {
		return Generation{}, err
	}
	return g, nil
}

// Current reports whether n is still the newest generation.
func (d Dir) Current(n uint64) (bool, error) {
	g, err := d.Generation()
	if err != nil {
		return false, err
	}
	return g.N == n, nil
}

// WhileCurrent runs f while holding the generation lock, only if n is still
// the newest generation; it reports whether f ran. Events that arrive while
// f runs are recorded after it, so they supersede what f did.
func (d Dir) WhileCurrent(ctx context.Context, n uint64, f func() error) (bool, error) {
	l, err := d.GenLock(ctx)
	if err != nil {
		return false, err
	}
	defer l.Unlock()
	ok, err := d.Current(n)
	if err != nil || !ok {
		return false, err
	}
	return true, f()
}

// WriteOutcomeIfCurrent writes o only when generation n is still the newest,
// so that the last event's outcome is the one that stands.
func (d Dir) WriteOutcomeIfCurrent(ctx context.Context, n uint64, o Outcome) (bool, error) {
	return d.WhileCurrent(ctx, n, func() error { return d.WriteOutcome(o) })
}
