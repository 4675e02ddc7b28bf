// Package state keeps what the vipguard binaries tell each other through the
// state directory: the maintenance flag (set by an operator, honoured by all)
// and the outcome of notify's last transition (read by mysqlcheck and
// agentcheck).
//
// Files are replaced atomically (write, fsync, rename), so a reader sees the
// old or the new content, never half of it. An unreadable or corrupt file is
// read as the unsafe state (maintenance on, node unfit), never as "all well".
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/vipguard/vipguard/internal/safefile"
)

const (
	maintenanceFile = "maintenance"
	outcomeFile     = "outcome.json"
	maxFileSize     = 64 << 10
)

// MaxReason bounds a maintenance reason: it is shown in one line by every
// tool and must leave its file well under the size every reader accepts,
// even with each byte escaped in JSON.
const MaxReason = 1024

// maxBy bounds the "by" field, which comes from the environment.
const maxBy = 256

// Dir is a vipguard state directory.
type Dir string

// Maintenance is the operator's maintenance flag.
type Maintenance struct {
	On     bool      `json:"-"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	By     string    `json:"by,omitempty"`
}

// Describe says why a check fails while maintenance is on: "maintenance
// mode is on since <when> (<reason>)". withSince leaves the time out where
// the answer must stay short (agentcheck's, which HAProxy shows on its
// status page next to its own timestamps).
func (m Maintenance) Describe(withSince bool) string {
	why := "maintenance mode is on"
	if withSince && !m.Since.IsZero() {
		why += " since " + m.Since.UTC().Format(time.RFC3339)
	}
	if m.Reason != "" {
		why += " (" + m.Reason + ")"
	}
	return why
}

// MaintenancePath is the flag file; its presence means maintenance is on.
func (d Dir) MaintenancePath() string { return filepath.Join(string(d), maintenanceFile) }

// OutcomePath is the file notify records its last outcome in.
func (d Dir) OutcomePath() string { return filepath.Join(string(d), outcomeFile) }

// Maintenance reads the flag. A flag file that exists but cannot be read or
// parsed still means "on": an operator asked for maintenance.
func (d Dir) Maintenance() (Maintenance, error) {
	data, err := readSmall(d.MaintenancePath())
	if errors.Is(err, fs.ErrNotExist) {
		return Maintenance{}, nil
	}
	m := Maintenance{On: true}
	if err != nil {
		m.Reason = "maintenance flag present but unreadable"
		return m, err
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &m); err != nil {
			m.Reason = "maintenance flag present (unparsable content)"
		}
	}
	m.On = true
	return m, nil
}

// SetMaintenance turns the flag on (with a reason of at most MaxReason
// bytes) or off.
func (d Dir) SetMaintenance(on bool, reason, by string) error {
	if !on {
		if err := os.Remove(d.MaintenancePath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("clearing maintenance flag: %w", err)
		}
		return syncDir(string(d))
	}
	if err := CheckReason(reason); err != nil {
		return err
	}
	if len(by) > maxBy {
		by = by[:maxBy]
	}
	m := Maintenance{On: true, Reason: reason, Since: time.Now().UTC().Truncate(time.Second), By: by}
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return d.writeAtomic(maintenanceFile, data)
}

// CheckReason refuses a maintenance reason longer than MaxReason.
func CheckReason(reason string) error {
	if len(reason) > MaxReason {
		return fmt.Errorf("maintenance reason is %d bytes long; at most %d", len(reason), MaxReason)
	}
	return nil
}

// Phase is how far notify's run got.
type Phase string

// The phases of a run. The strings are the file format: binaries of two
// versions read each other's outcome during an upgrade.
const (
	PhaseRunning Phase = "running"
	PhaseDone    Phase = "done"
	PhaseFailed  Phase = "failed"
)

// Role is what notify left the node as.
type Role string

// The roles, in the file format.
const (
	RoleWriter  Role = "writer"
	RoleStandby Role = "standby"
)

// Outcome is what notify last did on this node.
type Outcome struct {
	// Event is the keepalived state that triggered it (MASTER, BACKUP, ...).
	Event string `json:"event"`
	// Phase says whether the run is still going, done, or failed.
	Phase Phase `json:"phase"`
	// Role the node holds after it.
	Role Role `json:"role"`
	// Unfit marks the node unfit to hold the VIP or take writes (promotion
	// gate not met, replication could not be restarted, ...).
	Unfit  bool   `json:"unfit"`
	Reason string `json:"reason,omitempty"`
	// FinalPosition is the binlog/GTID position recorded by a fence.
	FinalPosition string    `json:"final_position,omitempty"`
	At            time.Time `json:"at"`
	// Position is FinalPosition in machine-readable form.
	Position *Position `json:"position,omitempty"`
	// Generation is the event number of the run that wrote this outcome.
	Generation uint64 `json:"generation,omitempty"`
	// SemiSync says, for a promotion, what semi-sync could promise about
	// the old writer's acknowledged writes.
	SemiSync SemiSyncCase `json:"semi_sync,omitempty"`
}

// SemiSyncCase is what semi-sync could say at a promotion about the old
// writer's acknowledged writes (package semisync decides it).
type SemiSyncCase string

// The cases, in the file format.
const (
	// SemiSyncAsync: the pair does not use semi-sync; nothing was promised.
	SemiSyncAsync SemiSyncCase = "async"
	// SemiSyncFenced: the old writer answered and was fenced: its final
	// position is known, semi-sync did not matter.
	SemiSyncFenced SemiSyncCase = "fenced"
	// SemiSyncKept: semi-sync was active with this node the acknowledging
	// replica: every acknowledged write was in this node's relay log.
	SemiSyncKept SemiSyncCase = "kept"
	// SemiSyncFallenBack: the old writer was committing without waiting
	// for this node: acknowledged writes may be missing here.
	SemiSyncFallenBack SemiSyncCase = "fallen-back"
	// SemiSyncUnknown: no recent sighting of the old writer.
	SemiSyncUnknown SemiSyncCase = "unknown"
)

// Safe reports whether a promotion in this case loses no acknowledged
// write once the relay log is applied (or, without semi-sync, whether
// nothing more was promised).
func (c SemiSyncCase) Safe() bool {
	return c == SemiSyncAsync || c == SemiSyncFenced || c == SemiSyncKept
}

// Promoted reports whether the outcome is a completed promotion that left
// the node fit: the only state in which a writable node may serve writes.
func (o *Outcome) Promoted() bool {
	return o != nil && !o.Unfit && o.Role == RoleWriter && o.Phase == PhaseDone
}

// Position is a server's own replication position at one moment.
type Position struct {
	ServerID uint32 `json:"server_id"`
	// GTID is @@gtid_binlog_pos (MariaDB) or @@gtid_executed (MySQL).
	GTID string `json:"gtid,omitempty"`
	// File and Pos are the own binary log coordinates.
	File string `json:"file,omitempty"`
	Pos  uint64 `json:"pos,omitempty"`
}

// Outcome reads notify's last outcome; nil when notify never ran here.
func (d Dir) Outcome() (*Outcome, error) {
	data, err := readSmall(d.OutcomePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return &Outcome{Unfit: true, Reason: "notify outcome unreadable"}, err
	}
	var o Outcome
	if err := json.Unmarshal(data, &o); err != nil {
		return &Outcome{Unfit: true, Reason: "notify outcome corrupt"}, fmt.Errorf("parsing %s: %w", outcomeFile, err)
	}
	return &o, nil
}

// WriteOutcome records notify's outcome.
func (d Dir) WriteOutcome(o Outcome) error {
	if o.At.IsZero() {
		o.At = time.Now().UTC()
	}
	data, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return err
	}
	return d.writeAtomic(outcomeFile, append(data, '\n'))
}

// readSmall reads a state file. Anyone who can write to state_dir could
// put a FIFO, a device or a symlink there: the open never blocks, never
// follows a link, and takes regular files only (see safefile).
func readSmall(path string) ([]byte, error) {
	return safefile.ReadRegular("state file", path, maxFileSize)
}

func (d Dir) writeAtomic(name string, data []byte) error { return d.writeFile(name, data, true) }

// writeFile replaces name atomically (temporary file, rename); durable
// also fsyncs the file and the directory.
func (d Dir) writeFile(name string, data []byte, durable bool) error {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	tmp, err := os.CreateTemp(string(d), "."+name+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(string(d), name)); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if !durable {
		return nil
	}
	return syncDir(string(d))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	return f.Sync()
}
