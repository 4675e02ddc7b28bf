package check

// The keepalived track file (docs/fast-failover.md). agentcheck keeps it
// at a sub-second interval; keepalived reads it on every inotify event and
// with "weight 0" enters FAULT while it holds a non-zero integer. This file
// is what both writers share: the format, the trusted read, the atomic
// write, and mysqlcheck's rule for a file agentcheck stopped refreshing.
//
// What keepalived 2.2.7 does with the file (trackers/track_file.c) shapes
// all of it: it watches the directory for IN_CLOSE_WRITE, IN_MOVE and
// IN_DELETE on the name; reads up to 127 bytes with strtol, so a leading
// integer followed by text is that integer; and reads a missing, empty or
// unparsable file as 0, "fine". So the file is only ever replaced by
// rename (never truncated and rewritten, which a close of another writer
// could expose half-done, never deleted), and a stale file is rewritten,
// not removed.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/safefile"
)

// Who writes the track file, as recorded in it.
const (
	WriterAgent = "agentcheck"
	WriterCheck = "mysqlcheck"
)

// maxTrackFile bounds a read of the track file; ours are one short line.
const maxTrackFile = 4 << 10

// maxTrackReason bounds the reason written after the value.
const maxTrackReason = 300

// Track is the content of the track file.
type Track struct {
	// Unfit is written as 1, fit as 0.
	Unfit bool
	// Writer is WriterAgent or WriterCheck; "" for content neither wrote.
	Writer string
	// Reason is one line saying why.
	Reason string
}

// Encode renders t as keepalived reads it: the value first.
func (t Track) Encode() []byte {
	v := "0"
	if t.Unfit {
		v = "1"
	}
	reason := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, t.Reason)
	if len(reason) > maxTrackReason {
		reason = reason[:maxTrackReason]
	}
	return fmt.Appendf(nil, "%s %s: %s\n", v, t.Writer, reason)
}

// ParseTrack reads content written by Encode. Anything else (keepalived's
// init_file "0\n", an operator's echo) has no writer, and a value other
// than 0 or 1 is an error.
func ParseTrack(data []byte) (Track, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	val, rest, _ := strings.Cut(string(line), " ")
	var t Track
	switch val {
	case "0":
	case "1":
		t.Unfit = true
	default:
		return Track{}, fmt.Errorf("track file holds %q, not 0 or 1", truncate(string(line), 40))
	}
	if w, reason, ok := strings.Cut(rest, ": "); ok && (w == WriterAgent || w == WriterCheck) {
		t.Writer, t.Reason = w, reason
	}
	return t, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// TrackFile is the track file as read.
type TrackFile struct {
	Track
	// BadContent is set, and Track empty, when the content is not ours.
	BadContent error
	ModTime    time.Time
}

// ReadTrack reads the track file; nil when there is none. keepalived runs
// as root and believes whatever the file says, so it is read only when it
// is a regular file (no symlink followed, no FIFO waited on) owned by root
// or the user running this and writable by no one else.
func ReadTrack(path string) (*TrackFile, error) {
	data, fi, err := safefile.ReadTrusted("track file", path, maxTrackFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f := &TrackFile{ModTime: fi.ModTime()}
	f.Track, f.BadContent = ParseTrack(data)
	return f, nil
}

// WriteTrack replaces the track file with t by rename, so that keepalived
// sees one IN_MOVED_TO and reads a whole value, never half of one. The
// directory is created when missing (keepalived must find it at its own
// start, though: see config.Agent.TrackFile) and must be owned by root or
// this user and writable by no one else, since whoever can write there can
// replace the file. No fsync: keepalived reads the page cache, and a file
// a crash left empty reads as "fine" to keepalived and as bad content to
// mysqlcheck, which rewrites it.
func WriteTrack(path string, t Track) error {
	dir, name := filepath.Split(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the track file's directory: %w", err)
	}
	if err := trustedDir(dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return fmt.Errorf("writing track file %q: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(t.Encode())
	if err == nil {
		// Readable by all, like the state files: it holds no secret and
		// operators cat it.
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing track file %q: %w", path, err)
	}
	return nil
}

// trustedDir applies the owner rule of safefile to the directory the
// track file is replaced in.
func trustedDir(dir string) error {
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("track file directory %q: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || !fi.IsDir() {
		return fmt.Errorf("track file directory %q is not a directory", dir)
	}
	if euid := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != euid {
		return fmt.Errorf("track file directory %q is owned by uid %d, not by root or the user running this (uid %d); run: chown %d %q", dir, st.Uid, euid, euid, dir)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("track file directory %q is writable by its group or others (mode %04o); run: chmod go-w %q", dir, perm, dir)
	}
	return nil
}

// TrackOutcome is what mysqlcheck does about the track file.
type TrackOutcome int

const (
	// TrackBelieved: agentcheck's, fresh (or ours and up to date): left
	// alone. keepalived follows it; mysqlcheck's exit code stands beside.
	TrackBelieved TrackOutcome = iota
	// TrackAbsent: no file; keepalived reads that as 0.
	TrackAbsent
	// TrackRewrite: stale, unparsable, or ours and out of date: replaced
	// with this check's verdict.
	TrackRewrite
	// TrackRefused: a file that fails the trust checks steers keepalived
	// all the same, so the node is unfit until it is fixed.
	TrackRefused
)

// JudgeTrack decides what mysqlcheck does about the track file (f and
// readErr from ReadTrack), given its own verdict fit, now, and the age
// past which agentcheck's file is stale. The why is one phrase for the
// reason line ("" when there is nothing to say).
//
// A stale "1" would pin the node in FAULT for as long as agentcheck stays
// dead; a stale "0" hides nothing, since mysqlcheck's own exit code fails
// the node anyway; rewriting either with this verdict makes the file true
// again. A file mysqlcheck wrote is its own and follows its verdict at
// every run, so that recovery is not held back by its staleness bound.
func JudgeTrack(f *TrackFile, readErr error, now time.Time, staleAfter time.Duration, fit bool) (TrackOutcome, string) {
	switch {
	case readErr != nil:
		return TrackRefused, readErr.Error()
	case f == nil:
		return TrackAbsent, ""
	case f.BadContent != nil:
		return TrackRewrite, f.BadContent.Error()
	case f.Writer == WriterCheck:
		if f.Unfit == !fit {
			return TrackBelieved, ""
		}
		return TrackRewrite, "track file follows this check while agentcheck does not refresh it"
	}
	age := now.Sub(f.ModTime)
	if age > staleAfter || -age > staleAfter {
		who := f.Writer
		if who == "" {
			who = "its writer"
		}
		return TrackRewrite, fmt.Sprintf("track file not refreshed for %s (%s dead or hung)", age.Round(time.Millisecond), who)
	}
	return TrackBelieved, ""
}

// ReconcileTrack is mysqlcheck's part of the fast path, after its own
// verdict v: it reads the track file, and rewrites it or refuses it as
// JudgeTrack says. The returned verdict is v, unfit when the file is
// refused, with a note on anything done. A failed rewrite is noted and
// changes nothing else: the exit code still carries v.
func ReconcileTrack(cfg *config.Config, v Verdict, now time.Time) Verdict {
	path := cfg.Agent.TrackFile
	if path == "" {
		return v
	}
	f, err := ReadTrack(path)
	outcome, why := JudgeTrack(f, err, now, cfg.Agent.TrackStaleAfter.Duration, v.Fit)
	switch outcome {
	case TrackRefused:
		// keepalived cannot be told to ignore it: the node cannot vouch
		// for what steers it.
		v.Fit, v.Status = false, Critical
		v.Reason = why + " (it steers keepalived: fix it, or set agent.track_file = \"\")"
	case TrackRewrite:
		t := Track{Unfit: !v.Fit, Writer: WriterCheck, Reason: v.Reason}
		if err := WriteTrack(path, t); err != nil {
			v.Reason += "; " + why + "; cannot rewrite it: " + err.Error()
		} else {
			v.Reason += "; " + why + ": rewrote it with this verdict"
		}
	}
	return v
}

// NotRunning reports whether err says that no mysqld is there to answer:
// its unix socket is gone, or nothing listens (connection refused). A
// server that is alive but slow, frozen or overloaded never looks like
// this: its connections time out, or a full accept queue answers EAGAIN.
func NotRunning(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Net == "unix" && errors.Is(err, syscall.ENOENT)
}
