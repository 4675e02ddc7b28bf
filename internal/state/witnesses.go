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
func (d Dir) LearnedWitnesses() ([]byte, error) {
	b, err := readSmall(filepath.Join(string(d), witnessesFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// WriteLearnedWitnesses replaces the saved list.
func (d Dir) WriteLearnedWitnesses(data []byte) error { return d.writeAtomic(witnessesFile, data) }
