package probe

// What one replication channel's state means. mysqlcheck's verdict,
// agentcheck's answer and notify's replication check all ask the same
// question — is this channel streaming, merely waiting for its source, or
// broken? — so the answer is given here, once.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// IOState is the receiver (IO) thread's Slave_IO_Running value.
type IOState string

// The IO thread states the servers report. Preparing is MariaDB's: set after
// every connect while the thread reads the source's settings, registers and
// asks for the binlog dump; it streams ("Yes") only after that.
const (
	IONo         IOState = "No"
	IOConnecting IOState = "Connecting"
	IOPreparing  IOState = "Preparing"
	IOYes        IOState = "Yes"
)

// Known reports whether s is one of the states above.
func (s IOState) Known() bool {
	switch s {
	case IONo, IOConnecting, IOPreparing, IOYes:
		return true
	}
	return false
}

// Health is what a channel's state means for the node that owns it.
type Health int

const (
	// Streaming: both threads run and the IO thread receives events.
	Streaming Health = iota
	// Starting: the IO thread is connecting or registering, with no error
	// yet; it streams shortly, or turns into one of the states below.
	Starting
	// SourceUnreachable: the IO thread cannot reach its source (client
	// errors, or a source that is shutting down). A standby in this state
	// is exactly the one that must be able to take over.
	SourceUnreachable
	// IOStopped: the IO thread is not running and reports no error
	// (STOP SLAVE by hand); it will not resume by itself.
	IOStopped
	// IOFailed: the IO thread failed on something retrying will not mend
	// (access denied, binlog purged on the source, server_id clash).
	IOFailed
	// SQLStopped: the applier is not running; nothing received is applied.
	SQLStopped
)

var healthNames = [...]string{"streaming", "starting", "source unreachable", "IO thread stopped", "IO thread failed", "SQL thread stopped"}

func (h Health) String() string {
	if int(h) < len(healthNames) {
		return healthNames[h]
	}
	return "unknown"
}

// Broken reports whether the channel needs a human (or at least a START):
// the data on this node stops following its source until then.
func (h Health) Broken() bool { return h >= IOStopped }

// Health classifies the channel.
func (r Replica) Health() Health {
	switch {
	case !r.SQLRunning:
		return SQLStopped
	case r.IOErrno != 0 && !SourceUnreachableError(r.IOErrno, r.IOError):
		if r.IORunning == IOYes {
			// The error is history: the thread reconnected since.
			return Streaming
		}
		return IOFailed
	case r.IORunning == IOYes:
		return Streaming
	case r.IORunning == IONo && r.IOErrno == 0:
		return IOStopped
	case r.IOErrno != 0:
		// A connect error, whether the thread still retries (Connecting)
		// or gave up (No): the source is away, the relay log is intact.
		return SourceUnreachable
	}
	return Starting
}

// NeedsStart reports whether a thread of the channel is not running and so
// will not resume when the source comes back.
func (r Replica) NeedsStart() bool { return !r.SQLRunning || r.IORunning == IONo }

// Problem says in one line what is wrong with a broken channel ("" when it
// is not broken).
func (r Replica) Problem() string {
	ch := ""
	if r.Channel != "" {
		ch = fmt.Sprintf(" %q", r.Channel)
	}
	switch r.Health() {
	case SQLStopped:
		if r.SQLErrno != 0 {
			return fmt.Sprintf("replication%s SQL thread stopped with error %d: %s", ch, r.SQLErrno, OneLine(r.SQLError))
		}
		return fmt.Sprintf("replication%s SQL thread is stopped", ch)
	case IOStopped:
		return fmt.Sprintf("replication%s IO thread is stopped", ch)
	case IOFailed:
		if r.IORunning == IONo {
			return fmt.Sprintf("replication%s IO thread stopped with error %d: %s", ch, r.IOErrno, OneLine(r.IOError))
		}
		// Still retrying, but e.g. 1045 access denied: retrying will not
		// mend it.
		return fmt.Sprintf("replication%s IO thread cannot log in to the source, error %d: %s", ch, r.IOErrno, OneLine(r.IOError))
	}
	return ""
}

// FollowsByGTID reports whether the channel finds its place in its
// source's binary log by GTID (MariaDB Using_Gtid Slave_Pos or Current_Pos,
// MySQL Auto_Position 1). Only such a channel can follow its source's
// address to another server: a binlog file name and offset mean nothing
// on any other server, so a replica of the VIP by file/position breaks, or
// reads from the wrong offset, when the VIP moves. True when the server
// does not say (neither column was read), so that older data never alarms.
func (r Replica) FollowsByGTID() bool {
	switch {
	case r.UsingGTID != "":
		return !strings.EqualFold(r.UsingGTID, "No")
	case r.AutoPosition != "":
		return r.AutoPosition != "0"
	}
	return true
}

// PositioningProblem says in one line, with the statement that mends it,
// that a channel cannot follow a VIP move ("" when FollowsByGTID).
func (r Replica) PositioningProblem() string {
	if r.FollowsByGTID() {
		return ""
	}
	ch := ""
	if r.Channel != "" {
		ch = fmt.Sprintf(" %q", r.Channel)
	}
	if r.UsingGTID != "" {
		return fmt.Sprintf("file/position replication%s (Using_Gtid=%s) cannot follow a VIP move: CHANGE MASTER TO MASTER_USE_GTID=slave_pos", ch, r.UsingGTID)
	}
	return fmt.Sprintf("file/position replication%s (Auto_Position=%s) cannot follow a VIP move: CHANGE REPLICATION SOURCE TO SOURCE_AUTO_POSITION=1", ch, r.AutoPosition)
}

// OneLine folds white space and caps a server message for one-line output.
func OneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// innerErrnoRE finds the client error a "source command failed" message
// wraps: MariaDB writes "... failed: <message> (Errno: 2013)", MySQL
// "... failed: <message> (Errno: 2013)" too.
var innerErrnoRE = regexp.MustCompile(`\(Errno: ?(\d+)\)`)

// SourceUnreachableError reports whether an IO thread error only means the
// source cannot be reached right now: a client connect error, or a command
// of the connect sequence (registering, asking for the binlog dump) that
// failed on one — what a source that is restarting or shutting down makes
// its replicas report.
func SourceUnreachableError(errno int, msg string) bool {
	if IsConnectErrno(errno) {
		return true
	}
	if !sourceCommandFailure[errno] {
		return false
	}
	m := innerErrnoRE.FindStringSubmatch(msg)
	if m == nil {
		return false
	}
	inner, err := strconv.Atoi(m[1])
	return err == nil && (IsConnectErrno(inner) || inner == errnoShutdown)
}
