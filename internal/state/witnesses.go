package state

import (
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/vipguard/vipguard/internal/safefile"
)

// witnessesFile holds the witnesses agentcheck learned from the proxies
// that ask it (see package witness for its content).
const witnessesFile = "witnesses.json"

// LearnedWitnesses returns the saved list, nil when there is none yet.
func (d Dir) LearnedWitnesses() ([]byte, error) { return d.readOptional(witnessesFile) }

// readOptional reads a state file that may not exist yet (nil then).
func (d Dir) readOptional(name string) ([]byte, error) {
	b, err := readSmall(filepath.Join(string(d), name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// WriteLearnedWitnesses replaces the saved list.
func (d Dir) WriteLearnedWitnesses(data []byte) error { return d.writeAtomic(witnessesFile, data) }

// peerSemiSyncFile holds agentcheck's last sighting of the peer's
// semi-sync state (see package semisync for its content).
const peerSemiSyncFile = "peer-semisync.json"

// PeerSemiSync returns the saved sighting, nil when there is none. It can
// let a promotion open writes that would otherwise be refused, so it is
// trusted only when owned by root (or the caller) and writable by no one
// else.
func (d Dir) PeerSemiSync() ([]byte, error) {
	b, _, err := safefile.ReadTrusted("semi-sync sighting", filepath.Join(string(d), peerSemiSyncFile), maxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// WritePeerSemiSync replaces the saved sighting, without fsync: it is
// rewritten every poll, and one lost in a crash only reads as unknown.
func (d Dir) WritePeerSemiSync(data []byte) error { return d.writeFile(peerSemiSyncFile, data, false) }
