package agent

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/vipguard/vipguard/internal/state"
)

// Files gives the maintenance flag and notify's outcome as they are now.
//
// Each call stats both files and re-reads one only when its identity
// (inode, size, mtime, ctime) changed. state writes by rename, so every
// change is a new inode: a stat (about a microsecond) on every check sees
// "agentcheck maint on" at the very next check, without an inotify
// goroutine that could miss events across a re-created directory.
type Files struct {
	dir     state.Dir
	maint   watched[state.Maintenance]
	outcome watched[*state.Outcome]
}

// NewFiles watches the state directory dir.
func NewFiles(dir string) *Files {
	d := state.Dir(dir)
	f := &Files{dir: d}
	f.maint = watched[state.Maintenance]{path: d.MaintenancePath(), load: d.Maintenance}
	f.outcome = watched[*state.Outcome]{path: filepath.Join(dir, "outcome.json"), load: d.Outcome}
	return f
}

// Maintenance returns the flag (see state.Dir.Maintenance).
func (f *Files) Maintenance() (state.Maintenance, error) { return f.maint.get() }

// Outcome returns notify's last outcome (see state.Dir.Outcome).
func (f *Files) Outcome() (*state.Outcome, error) { return f.outcome.get() }

type fileKey struct {
	exists                 bool
	ino, size, mtime, ctim int64
}

type watched[T any] struct {
	path   string
	load   func() (T, error)
	mu     sync.Mutex
	loaded bool
	key    fileKey
	val    T
	err    error
}

func (w *watched[T]) get() (T, error) {
	key, ok := statKey(w.path)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !ok || !w.loaded || key != w.key {
		// A stat error other than "not there" is not cached: read again.
		w.val, w.err = w.load()
		w.key, w.loaded = key, ok
	}
	return w.val, w.err
}

func statKey(path string) (fileKey, bool) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileKey{}, true
	}
	if err != nil {
		return fileKey{}, false
	}
	k := fileKey{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.ino = int64(st.Ino)
		k.ctim = st.Ctim.Nano()
	}
	return k, true
}
