package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
