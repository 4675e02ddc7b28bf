package check

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vipguard/vipguard/internal/config"
)

func TestTrackEncodeParse(t *testing.T) {
	for _, tc := range []struct {
		in   Track
		want string
	}{
		{Track{Writer: WriterAgent, Reason: "writer: read_only=OFF"}, "0 agentcheck: writer: read_only=OFF\n"},
		{Track{Unfit: true, Writer: WriterCheck, Reason: "line\nbreak\x1b[31m"}, "1 mysqlcheck: line break [31m\n"},
	} {
		got := string(tc.in.Encode())
		if got != tc.want {
			t.Errorf("Encode(%+v) = %q, want %q", tc.in, got, tc.want)
		}
		back, err := ParseTrack([]byte(got))
		if err != nil || back.Unfit != tc.in.Unfit || back.Writer != tc.in.Writer {
			t.Errorf("ParseTrack(%q) = %+v, %v", got, back, err)
		}
	}
	long := Track{Writer: WriterAgent, Reason: strings.Repeat("x", 1000)}
	if n := len(long.Encode()); n > maxTrackReason+20 {
		t.Errorf("a long reason makes a %d-byte file", n)
	}
	for _, tc := range []struct {
		in         string
		unfit      bool
		writer     string
		wantErrful bool
	}{
		{"0\n", false, "", false}, // keepalived's init_file, an operator's echo
		{"1", true, "", false},
		{"1 someone: else", true, "", false},
		{"0 agentcheck: fine", false, WriterAgent, false},
		{"", false, "", true},
		{"2\n", false, "", true},
		{"-1\n", false, "", true},
		{"fault\n", false, "", true},
	} {
		got, err := ParseTrack([]byte(tc.in))
		if (err != nil) != tc.wantErrful || got.Unfit != tc.unfit || got.Writer != tc.writer {
			t.Errorf("ParseTrack(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

func TestJudgeTrack(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	const stale = 2 * time.Second
	file := func(unfit bool, writer string, age time.Duration) *TrackFile {
		return &TrackFile{Track: Track{Unfit: unfit, Writer: writer}, ModTime: now.Add(-age)}
	}
	untrusted := errors.New(`track file "/x" is writable by its group or others (mode 0666)`)
	cases := []struct {
		name    string
		f       *TrackFile
		err     error
		fit     bool
		want    TrackOutcome
		whyPart string
	}{
		{"absent", nil, nil, true, TrackAbsent, ""},
		{"untrusted is refused", nil, untrusted, true, TrackRefused, "writable by its group"},
		{"fresh agentcheck fault is believed even when this check says fit", file(true, WriterAgent, 300*time.Millisecond), nil, true, TrackBelieved, ""},
		{"fresh agentcheck fine is believed; the exit code says unfit", file(false, WriterAgent, 300*time.Millisecond), nil, false, TrackBelieved, ""},
		{"at the bound still fresh", file(true, WriterAgent, stale), nil, true, TrackBelieved, ""},
		{"stale fault cannot pin the node", file(true, WriterAgent, stale+time.Millisecond), nil, true, TrackRewrite, "not refreshed for 2.001s (agentcheck dead or hung)"},
		{"stale fine is made true", file(false, WriterAgent, time.Hour), nil, false, TrackRewrite, "agentcheck dead or hung"},
		{"stale and equal is still taken over", file(false, WriterAgent, time.Hour), nil, true, TrackRewrite, "dead or hung"},
		{"mtime far in the future (clock stepped back) is stale", file(true, WriterAgent, -time.Hour), nil, true, TrackRewrite, "not refreshed"},
		{"unknown writer, stale", file(true, "", time.Minute), nil, true, TrackRewrite, "its writer dead or hung"},
		{"unknown writer, fresh", file(true, "", time.Second), nil, true, TrackBelieved, ""},
		{"ours, agreeing", file(true, WriterCheck, time.Hour), nil, false, TrackBelieved, ""},
		{"ours, out of date: follows at once", file(true, WriterCheck, 10*time.Millisecond), nil, true, TrackRewrite, "follows this check"},
		{"ours, now unfit", file(false, WriterCheck, 10*time.Millisecond), nil, false, TrackRewrite, "follows this check"},
		{"unparsable", &TrackFile{BadContent: errors.New(`track file holds "x", not 0 or 1`), ModTime: now}, nil, true, TrackRewrite, "not 0 or 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, why := JudgeTrack(tc.f, tc.err, now, stale, tc.fit)
			if got != tc.want || !strings.Contains(why, tc.whyPart) || (tc.whyPart == "" && why != "") {
				t.Fatalf("got %d %q, want %d with %q", got, why, tc.want, tc.whyPart)
			}
		})
	}
}

func TestNotRunning(t *testing.T) {
	dir := t.TempDir()
	_, errMissing := net.Dial("unix", filepath.Join(dir, "none.sock"))
	l, err := net.Listen("unix", filepath.Join(dir, "stale.sock"))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	_, errStale := net.Dial("unix", filepath.Join(dir, "stale.sock"))
	tl, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := tl.Addr().String()
	tl.Close()
	_, errTCP := net.Dial("tcp", addr)
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"socket gone", errMissing, true},
		{"socket left by a killed mysqld", errStale, true},
		{"tcp refused", errTCP, true},
		{"wrapped", fmt.Errorf("connecting: %w", errStale), true},
		{"accept queue full (frozen mysqld)", &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EAGAIN)}, false},
		{"timeout", os.ErrDeadlineExceeded, false},
		{"missing file on tcp is no socket", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ENOENT}, false},
		{"nil", nil, false},
	} {
		if got := NotRunning(tc.err); got != tc.want {
			t.Errorf("%s: NotRunning(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestWriteTrackAtomic: keepalived reads the file on every event; a
// reader racing the writer must only ever see a whole value, and each
// write must be a new inode (a rename, which keepalived sees as
// IN_MOVED_TO), never the old file truncated.
func TestWriteTrackAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mysql.track")
	if err := WriteTrack(path, Track{Writer: WriterAgent, Reason: "first"}); err != nil {
		t.Fatal(err)
	}
	// Held open, the first file keeps its inode (no reuse) and its
	// content, unless a write went into it in place.
	first, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	var stop atomic.Bool
	var bad atomic.Value
	var reads atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			b, err := os.ReadFile(path)
			if err != nil {
				bad.Store(fmt.Sprintf("read: %v", err))
				return
			}
			if tr, err := ParseTrack(b); err != nil || tr.Writer != WriterAgent || !strings.HasSuffix(string(b), "\n") {
				bad.Store(fmt.Sprintf("read %q", b))
				return
			}
			reads.Add(1)
		}
	}()
	for i := range 2000 {
		if err := WriteTrack(path, Track{Unfit: i%2 == 0, Writer: WriterAgent, Reason: strings.Repeat("r", i%300)}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if b := bad.Load(); b != nil {
		t.Fatal(b)
	}
	now, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	was, _ := first.Stat()
	if os.SameFile(now, was) {
		t.Fatal("the file was rewritten in place, not replaced by rename")
	}
	if b, _ := io.ReadAll(first); string(b) != "0 agentcheck: first\n" {
		t.Fatalf("the first file was written into: %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".mysql.track.*")); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %04o, want 0644", fi.Mode().Perm())
	}
	t.Logf("%d reads raced 2000 writes", reads.Load())
}

func TestWriteTrackDirectory(t *testing.T) {
	base := t.TempDir()
	// Missing: created.
	if err := WriteTrack(filepath.Join(base, "new", "mysql.track"), Track{Writer: WriterAgent}); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	err := WriteTrack(filepath.Join(open, "mysql.track"), Track{Writer: WriterAgent})
	if err == nil || !strings.Contains(err.Error(), "writable by its group or others (mode 0777); run: chmod go-w") {
		t.Fatalf("world-writable directory: %v", err)
	}
	// A symlink at the file's path is replaced, never written through.
	target := filepath.Join(base, "target")
	os.WriteFile(target, []byte("precious\n"), 0o644)
	link := filepath.Join(base, "new", "link.track")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteTrack(link, Track{Unfit: true, Writer: WriterAgent}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("the write went through the symlink: %q", b)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink != 0 {
		t.Fatal("the symlink is still there")
	}
}

func TestReadTrackTrust(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := WriteTrack(good, Track{Unfit: true, Writer: WriterAgent, Reason: "mysqld is not running"}); err != nil {
		t.Fatal(err)
	}
	f, err := ReadTrack(good)
	if err != nil || f == nil || !f.Unfit || f.Writer != WriterAgent || time.Since(f.ModTime) > time.Minute {
		t.Fatalf("ReadTrack = %+v, %v", f, err)
	}
	if f, err := ReadTrack(filepath.Join(dir, "absent")); f != nil || err != nil {
		t.Fatalf("absent: %+v, %v", f, err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	writable := filepath.Join(dir, "writable")
	os.WriteFile(writable, []byte("0\n"), 0o644)
	os.Chmod(writable, 0o664)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		link:     "is a symbolic link, which is not followed",
		writable: "is writable by its group or others",
		fifo:     "is a FIFO, not a regular file",
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(dir, "other")
		os.WriteFile(other, []byte("0\n"), 0o644)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases[other] = "is owned by uid 65534"
	}
	for p, want := range cases {
		done := make(chan struct{})
		go func() {
			defer close(done)
			f, err := ReadTrack(p)
			if f != nil || err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %+v, %v; want an error containing %q", filepath.Base(p), f, err, want)
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the read blocked", filepath.Base(p))
		}
	}
}

func TestReconcileTrack(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Agent.TrackFile = filepath.Join(dir, "mysql.track")
	cfg.Agent.TrackStaleAfter = config.Duration{Duration: 2 * time.Second}
	fit := Verdict{Fit: true, Status: OK, Role: "writer", Reason: "writer: read_only=OFF"}
	read := func() *TrackFile {
		t.Helper()
		f, err := ReadTrack(cfg.Agent.TrackFile)
		if err != nil || f == nil {
			t.Fatalf("ReadTrack: %+v, %v", f, err)
		}
		return f
	}
	age := func(d time.Duration) {
		t.Helper()
		at := time.Now().Add(-d)
		if err := os.Chtimes(cfg.Agent.TrackFile, at, at); err != nil {
			t.Fatal(err)
		}
	}

	// No file: nothing written (agentcheck may not be deployed at all).
	if v := ReconcileTrack(cfg, fit, time.Now()); !v.Fit || v.Reason != fit.Reason {
		t.Fatalf("absent: %+v", v)
	}
	if _, err := os.Stat(cfg.Agent.TrackFile); err == nil {
		t.Fatal("absent: the file was created")
	}

	// agentcheck's fresh "1": believed, left alone.
	if err := WriteTrack(cfg.Agent.TrackFile, Track{Unfit: true, Writer: WriterAgent, Reason: "no answer"}); err != nil {
		t.Fatal(err)
	}
	if v := ReconcileTrack(cfg, fit, time.Now()); !v.Fit || v.Reason != fit.Reason {
		t.Fatalf("fresh: %+v", v)
	}
	if f := read(); !f.Unfit || f.Writer != WriterAgent {
		t.Fatalf("fresh file was touched: %+v", f)
	}

	// agentcheck died after writing "1": the stale file no longer pins
	// the node in FAULT.
	age(5 * time.Second)
	v := ReconcileTrack(cfg, fit, time.Now())
	if !v.Fit || !strings.Contains(v.Reason, "agentcheck dead or hung): rewrote it with this verdict") {
		t.Fatalf("stale: %+v", v)
	}
	if f := read(); f.Unfit || f.Writer != WriterCheck {
		t.Fatalf("stale fault not rewritten: %+v", f)
	}

	// Now mysqlcheck's own: it follows the verdict at once.
	unfit := Verdict{Status: Critical, Reason: "mysqld is not running"}
	if v := ReconcileTrack(cfg, unfit, time.Now()); v.Fit || !strings.Contains(v.Reason, "follows this check") {
		t.Fatalf("own file: %+v", v)
	}
	if f := read(); !f.Unfit || f.Reason != "mysqld is not running" {
		t.Fatalf("own file did not follow: %+v", f)
	}

	// A file keepalived would believe but nobody may trust: unfit.
	os.Chmod(cfg.Agent.TrackFile, 0o666)
	if v := ReconcileTrack(cfg, fit, time.Now()); v.Fit || v.Status != Critical || !strings.Contains(v.Reason, "writable by its group or others") {
		t.Fatalf("untrusted: %+v", v)
	}

	// Disabled: nothing read.
	cfg.Agent.TrackFile = ""
	if v := ReconcileTrack(cfg, fit, time.Now()); !v.Fit {
		t.Fatalf("disabled: %+v", v)
	}
}
