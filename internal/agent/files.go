package agent

import (
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
//
// The stat does not follow symlinks and the read never blocks (see
// state): whatever is planted in state_dir, a check is answered. The read
// runs outside the lock, so a slow one delays its own check only.
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
	f.outcome = watched[*state.Outcome]{path: d.OutcomePath(), load: d.Outcome}
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
	if ok && w.loaded && key == w.key {
		v, err := w.val, w.err
		w.mu.Unlock()
		return v, err
	}
	load := w.load
	w.mu.Unlock()
	v, err := load()
	// Stored with the key seen before the read: had the file changed in
	// between, the next stat differs and reads it again. A stat error
	// other than "not there" is not cached: read again next time.
	w.mu.Lock()
	w.val, w.err, w.key, w.loaded = v, err, key, ok
	w.mu.Unlock()
	return v, err
}

// statKey lstats path with the bare system call: os.Lstat's allocations
// would come with every check.
func statKey(path string) (fileKey, bool) {
	var st syscall.Stat_t
	err := syscall.Lstat(path, &st)
	for err == syscall.EINTR {
		err = syscall.Lstat(path, &st)
	}
	switch {
	case err == syscall.ENOENT || err == syscall.ENOTDIR:
		return fileKey{}, true
	case err != nil:
		return fileKey{}, false
	}
	return fileKey{exists: true, ino: int64(st.Ino), size: st.Size,
		mtime: st.Mtim.Nano(), ctim: st.Ctim.Nano()}, true
}
