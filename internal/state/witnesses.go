package state

import (
	"errors"
	"io/fs"
	"path/filepath"
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

// PeerSemiSync returns the saved sighting, nil when there is none.
func (d Dir) PeerSemiSync() ([]byte, error) { return d.readOptional(peerSemiSyncFile) }

// WritePeerSemiSync replaces the saved sighting.
func (d Dir) WritePeerSemiSync(data []byte) error { return d.writeAtomic(peerSemiSyncFile, data) }
