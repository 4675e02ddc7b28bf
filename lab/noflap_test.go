package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultCount counts the FAULT transitions a node's keepalived logged.
func (l *Lab) faultCount(name string) int {
	b, _ := os.ReadFile(filepath.Join(l.Nodes[name].Dir, "keepalived.log"))
	return strings.Count(string(b), "Entering FAULT STATE")
}

// holdStill watches the pair for d: the VIP must stay on holder and its
// keepalived must not go FAULT. It returns what moved, "" when nothing.
func (l *Lab) holdStill(ctx context.Context, holder string, d time.Duration) string {
	faults := l.faultCount(holder)
	for end := time.Now().Add(d); time.Now().Before(end); {
		if h, err := l.Holder(ctx); err == nil && h != holder {
			return fmt.Sprintf("the VIP moved to %q", h)
		}
		if n := l.faultCount(holder); n != faults {
			return fmt.Sprintf("%s's keepalived went FAULT", holder)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err.Error()
		}
	}
	return ""
}

// spin keeps every core of the lab host busy from the node's namespace
// (twice as many spinning shells as cores) until the returned stop; each
// is bounded by timeout(1) and killed with its process group.
func (l *Lab) spin(ctx context.Context, name string, cores int) (stop func(), err error) {
	var procs []*exec.Cmd
	stop = func() {
		for _, p := range procs {
			syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			p.Wait()
		}
	}
	for range 2 * cores {
		argv := append(l.Net.Wrap(name), "timeout", "180", "sh", "-c", "while :; do :; done")
		p := exec.CommandContext(ctx, argv[0], argv[1:]...)
		p.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := p.Start(); err != nil {
			stop()
			return nil, err
		}
		procs = append(procs, p)
	}
	return stop, nil
}

// TestNoFlapUnderSaturation: the writer's host with every core saturated
// and the load generator writing as fast as it can for 60 s. A slower
// server is not a dead one: the fast path's tolerance and mysqlcheck's
// fall count must ride it out — zero VIP moves, zero FAULTs.
func TestNoFlapUnderSaturation(t *testing.T) {
	l, ctx, h := stableLab(t)
	ld, err := l.StartLoad(ctx, LoadOptions{Writers: 4, Pause: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stop, err := l.spin(ctx, h, 2)
	if err != nil {
		ld.Stop()
		t.Fatal(err)
	}
	moved := l.holdStill(ctx, h, 60*time.Second)
	stop()
	lr, lerr := ld.Stop()
	if moved != "" {
		t.Fatalf("under CPU saturation and full write load: %s\n%s", moved, l.Diagnostics())
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	record(t, fmt.Sprintf("%-16s %s held the VIP through 60s of saturated CPU and full write load: %d writes acknowledged, longest gap %.2fs",
		"no-flap-cpu", h, len(lr.Acked), lr.MaxGap().Seconds()))
	if err := l.VerifyAll(ctx, lr.Acked); err != nil {
		t.Error(err)
	}
}

// TestNoFlapShortStall: mysqld on the writer stops for 1 s (SIGSTOP), less
// than [agent] unresponsive_after (1.4 s): nothing moves.
func TestNoFlapShortStall(t *testing.T) {
	l, ctx, h := stableLab(t)
	ld, err := l.StartLoad(ctx, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := sleep(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.FreezeMySQL(h); err != nil {
		ld.Stop()
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := l.ThawMySQL(h); err != nil {
		ld.Stop()
		t.Fatal(err)
	}
	moved := l.holdStill(ctx, h, 5*time.Second)
	lr, lerr := ld.Stop()
	if moved != "" {
		t.Fatalf("after a 1s stall: %s\n%s", moved, l.Diagnostics())
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	record(t, fmt.Sprintf("%-16s %s held the VIP through a 1s mysqld stall: longest write gap %.2fs", "no-flap-stall", h, lr.MaxGap().Seconds()))
	if err := l.VerifyAll(ctx, lr.Acked); err != nil {
		t.Error(err)
	}
}
