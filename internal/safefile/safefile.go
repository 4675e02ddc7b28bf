// Package safefile opens the files vipguard's root-run tools act on — the
// configuration, MySQL option files, the state directory's files and locks,
// notify's FIFO — so that a local user cannot steer or wedge them.
//
// A final symlink is never followed (root would otherwise read, create or
// lock whatever the link points at); an open never blocks (a FIFO or a
// device put where a file belongs is refused, not waited on); the kind,
// owner and mode are checked on the opened descriptor, so nothing can be
// swapped between the check and the use; and reads stop at a size limit.
// A refusal is an *Error that names the file and says how to fix it.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Error says why a file was refused, and how to fix it.
type Error struct {
	// What names the file's role in the message ("config", "option file").
	What string
	Path string
	// Problem completes "<what> <path> ...", e.g. "is a symbolic link".
	Problem string
	// Fix is what to run or do, "" when the problem says it all.
	Fix string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s %q %s", e.What, e.Path, e.Problem)
	if e.Fix != "" {
		s += "; " + e.Fix
	}
	return s
}

// openFlags are added to every open: no final symlink, no waiting for a
// FIFO's other end or a device, no descriptor leaking into children.
const openFlags = syscall.O_NOFOLLOW | syscall.O_NONBLOCK | syscall.O_CLOEXEC

// open opens path with openFlags and fstats the descriptor.
func open(what, path string, flag int, perm fs.FileMode) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, flag|openFlags, perm)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, symlinkError(what, path)
		}
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

func symlinkError(what, path string) error {
	e := &Error{What: what, Path: path, Problem: "is a symbolic link, which is not followed"}
	if target, err := os.Readlink(path); err == nil {
		e.Fix = fmt.Sprintf("name the file it points to (%q) instead", target)
	}
	return e
}

// kindName describes a file that is not what was asked for.
func kindName(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsRegular():
		return "a regular file"
	}
	return "a special file"
}

// OpenRegular opens path (flag as for os.OpenFile: os.O_RDONLY, or
// os.O_RDWR|os.O_CREATE for a lock file) and returns it only when it is a
// regular file, with what fstat said about it.
func OpenRegular(what, path string, flag int, perm fs.FileMode) (*os.File, fs.FileInfo, error) {
	f, fi, err := open(what, path, flag, perm)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &Error{What: what, Path: path, Problem: "is " + kindName(fi.Mode()) + ", not a regular file"}
	}
	return f, fi, nil
}

// ReadRegular reads a regular file of at most limit bytes.
func ReadRegular(what, path string, limit int64) ([]byte, error) {
	data, _, err := read(what, path, limit, false)
	return data, err
}

// ReadTrusted is ReadRegular for a file that steers a root-run tool. Like
// sshd's StrictModes, it also requires the file to be owned by root or by
// the effective user and not writable by its group or others: whoever can
// change it decides what root does. It returns what fstat said, for rules
// of the caller's own (a file holding a password).
func ReadTrusted(what, path string, limit int64) ([]byte, fs.FileInfo, error) {
	return read(what, path, limit, true)
}

func read(what, path string, limit int64, trusted bool) ([]byte, fs.FileInfo, error) {
	f, fi, err := OpenRegular(what, path, os.O_RDONLY, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if trusted {
		if err := checkOwner(what, path, fi, true); err != nil {
			return nil, nil, err
		}
	}
	tooBig := &Error{What: what, Path: path, Problem: fmt.Sprintf("is larger than %s", size(limit))}
	if fi.Size() > limit {
		return nil, nil, tooBig
	}
	// The size may grow between fstat and read: the limit holds anyway.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(data)) > limit {
		return nil, nil, tooBig
	}
	return data, fi, nil
}

// OpenFIFO opens the named pipe at path for reading and writing (so that
// the writer closing it is no end of file) without blocking. It must be a
// FIFO, owned by the effective user, and writable by no one else: every
// line written to it is an order to act.
func OpenFIFO(what, path string) (*os.File, error) {
	f, fi, err := open(what, path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&fs.ModeNamedPipe == 0 {
		f.Close()
		return nil, &Error{What: what, Path: path, Problem: "is " + kindName(fi.Mode()) + ", not a FIFO"}
	}
	if err := checkOwner(what, path, fi, false); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkOwner applies the owner and mode rule to what fstat said. rootToo
// also accepts root as the owner when running as another user.
func checkOwner(what, path string, fi fs.FileInfo, rootToo bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &Error{What: what, Path: path, Problem: "has no owner this system reports"}
	}
	euid := uint32(os.Geteuid())
	if st.Uid != euid && !(rootToo && st.Uid == 0) {
		who := "the user running this"
		if rootToo && euid != 0 {
			who = "root or " + who
		}
		return &Error{What: what, Path: path,
			Problem: fmt.Sprintf("is owned by uid %d, not by %s (uid %d)", st.Uid, who, euid),
			Fix:     fmt.Sprintf("run: chown %d %q", euid, path)}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &Error{What: what, Path: path,
			Problem: fmt.Sprintf("is writable by its group or others (mode %04o)", perm),
			Fix:     fmt.Sprintf("run: chmod go-w %q", path)}
	}
	return nil
}

func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
