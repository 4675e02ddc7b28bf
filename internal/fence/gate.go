package fence

import (
	"fmt"
	"strings"

	"github.com/vipguard/vipguard/internal/probe"
)

// relayApplied decides, for one channel whose source's final position is
// unknown (the old writer does not answer), whether this node has applied
// everything it can: before and now are two readings of the channel taken
// a wait step apart.
//
// With GTID auto-positioning (MySQL) the retrieved set is compared with the
// executed one. The server adds a transaction to the retrieved set only
// once all of it is in the relay log, so a transaction the old writer never
// finished sending cannot hold this up; and file:pos is not trustworthy
// there (GTID_ONLY channels show it as INVALID after a restart).
//
// Otherwise the source coordinates are compared, and those do count a
// partial transaction as received: the relay log then ends in events that
// can never be applied. So with the source gone, an applier that has read
// the whole relay log and applied nothing between the two readings has
// applied every complete transaction it holds, and that is met too.
func relayApplied(before, now probe.Replica) (bool, string) {
	ch := fmt.Sprintf("channel %q", now.Channel)
	if !now.SQLRunning {
		return false, fmt.Sprintf("%s: SQL thread stopped (%d %s)", ch, now.SQLErrno, probe.OneLine(now.SQLError))
	}
	if now.RetrievedSet != "" {
		missing, err := gtidMissing(now.RetrievedSet, now.ExecutedSet)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", ch, err)
		}
		if missing != "" {
			return false, fmt.Sprintf("%s: received but not applied %s", ch, missing)
		}
		return true, ""
	}
	if validFilePos(now) && now.CaughtUpFilePos() {
		return true, ""
	}
	behind := fmt.Sprintf("%s: applied %s:%d of received %s:%d", ch,
		now.RelaySourceLogFile, now.ExecSourceLogPos, now.SourceLogFile, now.ReadSourceLogPos)
	if !validFilePos(now) {
		// Nothing to compare and no GTIDs: nothing received since the
		// restart that made the coordinates invalid.
		return true, ""
	}
	if now.Health() == probe.Streaming || before.Health() == probe.Streaming {
		// The source still sends: what it sent is complete, apply it.
		return false, behind
	}
	if idleApplier(before) && idleApplier(now) && sameApplied(before, now) {
		return true, behind + ": the rest is a transaction the old writer never finished sending; nothing more can be applied"
	}
	return false, behind
}

// validFilePos reports whether the channel's source coordinates are real:
// MySQL's GTID_ONLY channels show INVALID and 0 until they receive again.
func validFilePos(r probe.Replica) bool {
	return r.SourceLogFile != "" && r.SourceLogFile != "INVALID" && r.RelaySourceLogFile != "INVALID" && r.ReadSourceLogPos > 0
}

// idleApplier reports whether the applier says it has read the whole relay
// log ("Slave has read all relay log; waiting for …", "Replica has read all
// relay log; …" on MySQL 8.0.26+).
func idleApplier(r probe.Replica) bool {
	return strings.Contains(r.SQLState, "has read all relay log")
}

// sameApplied reports whether nothing was applied between two readings.
func sameApplied(a, b probe.Replica) bool {
	return a.RelaySourceLogFile == b.RelaySourceLogFile && a.ExecSourceLogPos == b.ExecSourceLogPos &&
		a.ExecutedSet == b.ExecutedSet && a.GTIDIOPos == b.GTIDIOPos
}

// gtidMissing returns what of received (a MySQL GTID set) executed lacks.
func gtidMissing(received, executed string) (string, error) {
	r, err := probe.ParseMySQLGTIDSet(received)
	if err != nil {
		return "", fmt.Errorf("retrieved GTID set: %w", err)
	}
	x, err := probe.ParseMySQLGTIDSet(executed)
	if err != nil {
		return "", fmt.Errorf("executed GTID set: %w", err)
	}
	return r.Missing(x), nil
}
