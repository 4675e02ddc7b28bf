package state

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMaintenanceRoundTrip(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "sub")) // created on first write
	m, err := d.Maintenance()
	if err != nil || m.On {
		t.Fatalf("fresh dir: %+v %v", m, err)
	}
	if err := d.SetMaintenance(true, "kernel update", "alice"); err != nil {
		t.Fatal(err)
	}
	m, err = d.Maintenance()
	if err != nil || !m.On || m.Reason != "kernel update" || m.By != "alice" || m.Since.IsZero() {
		t.Fatalf("after on: %+v %v", m, err)
	}
	if err := d.SetMaintenance(false, "", ""); err != nil {
		t.Fatal(err)
	}
	if m, _ = d.Maintenance(); m.On {
		t.Fatal("still on after off")
	}
	if err := d.SetMaintenance(false, "", ""); err != nil {
		t.Fatalf("off twice: %v", err)
	}
	ents, _ := os.ReadDir(string(d))
	if len(ents) != 0 {
		t.Fatalf("leftover files: %v", ents)
	}
}

func TestMaintenanceUnsafeReads(t *testing.T) {
	d := Dir(t.TempDir())
	// An operator's `touch maintenance` means on.
	os.WriteFile(d.MaintenancePath(), nil, 0o644)
	if m, err := d.Maintenance(); err != nil || !m.On {
		t.Fatalf("empty flag: %+v %v", m, err)
	}
	os.WriteFile(d.MaintenancePath(), []byte("{not json"), 0o644)
	if m, _ := d.Maintenance(); !m.On || !strings.Contains(m.Reason, "unparsable") {
		t.Fatalf("garbage flag: %+v", m)
	}
	os.WriteFile(d.MaintenancePath(), make([]byte, maxFileSize+10), 0o644)
	if m, err := d.Maintenance(); !m.On || err == nil {
		t.Fatalf("oversized flag: %+v %v", m, err)
	}
}

func TestOutcome(t *testing.T) {
	d := Dir(t.TempDir())
	if o, err := d.Outcome(); o != nil || err != nil {
		t.Fatalf("no outcome yet: %+v %v", o, err)
	}
	want := Outcome{Event: "MASTER", Phase: "done", Role: "writer", FinalPosition: "1-1-9"}
	if err := d.WriteOutcome(want); err != nil {
		t.Fatal(err)
	}
	o, err := d.Outcome()
	if err != nil || o.Event != "MASTER" || o.Role != "writer" || o.Unfit || o.At.IsZero() {
		t.Fatalf("%+v %v", o, err)
	}
	os.WriteFile(filepath.Join(string(d), outcomeFile), []byte("{"), 0o644)
	if o, err := d.Outcome(); err == nil || !o.Unfit {
		t.Fatalf("corrupt outcome must read as unfit: %+v %v", o, err)
	}
}

// within fails the test when f blocks: a state file must never wedge a
// reader (agentcheck answers checks from the accept loop).
func within(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("blocked")
	}
}

// A FIFO, a symlink or a directory planted in state_dir reads as the
// unsafe state with an error, at once.
func TestStateFilesRegularOnly(t *testing.T) {
	for _, kind := range []string{"fifo", "symlink", "directory"} {
		t.Run(kind, func(t *testing.T) {
			d := Dir(t.TempDir())
			plant := func(p string) {
				switch kind {
				case "fifo":
					if err := syscall.Mkfifo(p, 0o644); err != nil {
						t.Fatal(err)
					}
				case "symlink":
					target := filepath.Join(t.TempDir(), "target")
					os.WriteFile(target, []byte(`{"event":"MASTER","phase":"done","role":"writer"}`), 0o644)
					os.Symlink(target, p)
				case "directory":
					os.Mkdir(p, 0o755)
				}
			}
			plant(d.MaintenancePath())
			plant(filepath.Join(string(d), outcomeFile))
			plant(filepath.Join(string(d), generationFile))
			within(t, func() {
				if m, err := d.Maintenance(); !m.On || err == nil {
					t.Errorf("maintenance: %+v %v", m, err)
				}
				if o, err := d.Outcome(); o == nil || !o.Unfit || err == nil {
					t.Errorf("outcome: %+v %v", o, err)
				}
				if ok, err := d.Current(0); ok || err == nil {
					t.Errorf("generation: %v %v", ok, err)
				}
			})
		})
	}
}

// A reason longer than MaxReason is refused when given, not written and
// then found unreadable.
func TestMaintenanceReasonCapped(t *testing.T) {
	d := Dir(t.TempDir())
	err := d.SetMaintenance(true, strings.Repeat("x", 64<<10+1), "alice")
	if err == nil || !strings.Contains(err.Error(), "at most 1024") {
		t.Fatalf("long reason: %v", err)
	}
	if _, err := os.Lstat(d.MaintenancePath()); err == nil {
		t.Fatal("flag written despite the refused reason")
	}
	// The longest reason, every byte escaped in JSON, still reads back.
	reason := strings.Repeat("\x01", MaxReason)
	if err := d.SetMaintenance(true, reason, strings.Repeat("b", 1<<20)); err != nil {
		t.Fatal(err)
	}
	if m, err := d.Maintenance(); err != nil || m.Reason != reason || len(m.By) != maxBy {
		t.Fatalf("read back: %v (reason %d bytes, by %d)", err, len(m.Reason), len(m.By))
	}
}

// The outcome file is the contract between notify and the checkers, also
// across an upgrade: a file written by an earlier release reads the same.
func TestOutcomeFileFormat(t *testing.T) {
	dir := Dir(t.TempDir())
	old := `{
  "event": "MASTER",
  "phase": "done",
  "role": "writer",
  "unfit": false,
  "at": "2026-11-01T10:00:00Z",
  "generation": 7
}
`
	if err := os.WriteFile(filepath.Join(string(dir), "outcome.json"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := dir.Outcome()
	if err != nil || o.Phase != PhaseDone || o.Role != RoleWriter || !o.Promoted() || o.Generation != 7 {
		t.Fatalf("%+v %v", o, err)
	}
	if err := dir.WriteOutcome(Outcome{Event: "BACKUP", Phase: PhaseFailed, Role: RoleStandby, Unfit: true}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(string(dir), "outcome.json"))
	if err != nil || !strings.Contains(string(b), `"phase": "failed"`) || !strings.Contains(string(b), `"role": "standby"`) {
		t.Fatalf("written %s (%v)", b, err)
	}
	for _, o := range []*Outcome{nil, {Phase: PhaseRunning, Role: RoleWriter}, {Phase: PhaseDone, Role: RoleStandby},
		{Phase: PhaseDone, Role: RoleWriter, Unfit: true}} {
		if o.Promoted() {
			t.Errorf("%+v reads as a completed promotion", o)
		}
	}
}

// The semi-sync sighting can turn a refused promotion into an opened one:
// one that others could have written is not believed.
func TestPeerSemiSyncTrusted(t *testing.T) {
	d := Dir(t.TempDir())
	if b, err := d.PeerSemiSync(); b != nil || err != nil {
		t.Fatalf("none yet: %q %v", b, err)
	}
	if err := d.WritePeerSemiSync([]byte(`{"at":"2026-12-02T10:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	if b, err := d.PeerSemiSync(); err != nil || len(b) == 0 {
		t.Fatalf("written: %q %v", b, err)
	}
	path := filepath.Join(string(d), peerSemiSyncFile)
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PeerSemiSync(); err == nil || !strings.Contains(err.Error(), "writable by its group or others") {
		t.Fatalf("world-writable sighting: %v", err)
	}
	os.Remove(path)
	if err := os.Symlink(filepath.Join(t.TempDir(), "x"), path); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PeerSemiSync(); err == nil {
		t.Fatal("a symlinked sighting was read")
	}
}
