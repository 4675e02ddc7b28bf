package state

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestGenerationNewestWins(t *testing.T) {
	d := Dir(t.TempDir())
	ctx := context.Background()
	if g, err := d.Generation(); err != nil || g.N != 0 {
		t.Fatalf("fresh: %+v %v", g, err)
	}
	g1, err := d.BumpGeneration(ctx, "MASTER")
	if err != nil || g1.N != 1 {
		t.Fatal(g1, err)
	}
	g2, _ := d.BumpGeneration(ctx, "BACKUP")
	if g2.N != 2 {
		t.Fatal(g2)
	}
	ran := false
	ok, err := d.WhileCurrent(ctx, g1.N, func() error { ran = true; return nil })
	if ok || ran || err != nil {
		t.Fatalf("superseded generation ran: %v %v %v", ok, ran, err)
	}
	if ok, err := d.WriteOutcomeIfCurrent(ctx, g1.N, Outcome{Event: "MASTER", Role: "writer"}); ok || err != nil {
		t.Fatal("stale outcome written")
	}
	if ok, err := d.WriteOutcomeIfCurrent(ctx, g2.N, Outcome{Event: "BACKUP", Role: "standby", Generation: g2.N}); !ok || err != nil {
		t.Fatal("current outcome not written", err)
	}
	if o, _ := d.Outcome(); o.Event != "BACKUP" || o.Generation != 2 {
		t.Fatalf("outcome %+v", o)
	}
	// A corrupt counter reads as superseded, and the next event repairs it.
	os.WriteFile(filepath.Join(string(d), generationFile), []byte("{"), 0o644)
	if ok, _ := d.Current(g2.N); ok {
		t.Fatal("corrupt generation read as current")
	}
	if g, err := d.BumpGeneration(ctx, "FAULT"); err != nil || g.N != 1 {
		t.Fatalf("after corruption: %+v %v", g, err)
	}
}

func TestRunLockExcludes(t *testing.T) {
	d := Dir(t.TempDir())
	ctx := context.Background()
	l, err := d.RunLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := d.RunLock(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second holder: %v", err)
	}
	l.Unlock()
	l2, err := d.RunLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l2.Unlock()
	var nilLock *Lock
	nilLock.Unlock() // a fence that proceeded without the lock
}

// Lock files are created by root: a symlink planted in their place must
// not make root create or lock the file it points at, and a FIFO must not
// block.
func TestLockFilesNoFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, name := range []string{generationLock, runLock} {
		d := Dir(t.TempDir())
		victim := filepath.Join(t.TempDir(), "victim")
		if err := os.Symlink(victim, filepath.Join(string(d), name)); err != nil {
			t.Fatal(err)
		}
		var err error
		if name == runLock {
			_, err = d.RunLock(ctx)
		} else {
			_, err = d.BumpGeneration(ctx, "MASTER")
		}
		if err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
			t.Fatalf("%s through a symlink: %v", name, err)
		}
		if _, err := os.Lstat(victim); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: root created the link's target: %v", name, err)
		}
	}
	d := Dir(t.TempDir())
	if err := syscall.Mkfifo(filepath.Join(string(d), runLock), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RunLock(ctx); err == nil || !strings.Contains(err.Error(), "is a FIFO") {
		t.Fatalf("fifo lock: %v", err)
	}
}
