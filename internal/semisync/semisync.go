// Package semisync holds vipguard's rules for semi-synchronous pairs, as
// pure functions over what was observed:
//
//   - Roles: the writer waits for acknowledgements whenever an
//     acknowledging replica is connected; a standby never waits (its
//     applier would stall for the whole timeout once the writer dies,
//     because every transaction it applies is logged and its own source
//     side waits for the dead writer's acknowledgement).
//   - The promise: when the old writer does not answer at promotion, the
//     last sighting of it says whether every write it acknowledged is
//     already in this node's relay log (semi-sync active, this node the
//     acknowledging replica) or may be missing (fallen back to
//     asynchronous, another replica could acknowledge, or not known).
//
// agentcheck takes the sightings (it polls the peer while this node is a
// standby) and keeps the roles; notify asks the promise at promotion.
package semisync

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
)

// Sighting is what this node last saw of its peer's semi-sync state.
type Sighting struct {
	// At is when the peer answered.
	At time.Time `json:"at"`
	// PeerServerID identifies the peer that answered.
	PeerServerID uint32 `json:"peer_server_id"`
	// PeerWritable: the peer was the writer then.
	PeerWritable bool `json:"peer_writable"`
	// Peer's source side.
	Enabled   bool          `json:"enabled"`
	On        bool          `json:"on"`
	Clients   int           `json:"clients"`
	WaitFor   int           `json:"wait_for"`
	Timeout   time.Duration `json:"timeout_ns"`
	FallBacks uint64        `json:"fall_backs"`
	Unacked   uint64        `json:"unacked"`
	// SelfAcking: this node's IO thread was then connected to the peer as
	// an acknowledging replica and streaming.
	SelfAcking bool `json:"self_acking"`
}

// NewSighting records the peer's state as seen at 'at', with whether this
// node was acknowledging it.
func NewSighting(at time.Time, peerID uint32, peerWritable bool, peer probe.SemiSync, selfAcking bool) Sighting {
	return Sighting{At: at.UTC(), PeerServerID: peerID, PeerWritable: peerWritable,
		Enabled: peer.SourceEnabled, On: peer.SourceOn, Clients: peer.Clients, WaitFor: max(peer.WaitFor, 1),
		Timeout: peer.Timeout, FallBacks: peer.FallBacks, Unacked: peer.Unacked, SelfAcking: selfAcking}
}

// Marshal encodes the sighting for the state directory.
func (s Sighting) Marshal() ([]byte, error) { return json.Marshal(s) }

// ParseSighting decodes a saved sighting.
func ParseSighting(b []byte) (*Sighting, error) {
	var s Sighting
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("semi-sync sighting: %w", err)
	}
	if s.At.IsZero() {
		return nil, fmt.Errorf("semi-sync sighting: no time")
	}
	return &s, nil
}

// SelfAcking reports whether a node acknowledges its source now: its
// replica side is on and the channel's receiver is connected (the
// receiver acknowledges on receipt; whether the applier runs does not
// matter).
func SelfAcking(local probe.SemiSync, channel *probe.Replica) bool {
	return local.ReplicaOn && channel != nil && channel.IORunning == probe.IOYes
}

// Promise decides, when the old writer does not answer, what the last
// sighting of it says. pairUses says whether this pair runs semi-sync
// (this node acknowledges, or the peer was seen waiting for
// acknowledgements); now is the time of the decision.
//
// A writer falls back to asynchronous only after a commit waited the whole
// timeout without an acknowledgement. So a sighting showing semi-sync
// active, younger than that timeout, with this node the only replica that
// could acknowledge, rules out a fall-back before the writer went silent —
// up to a commit that had already been waiting for almost the whole
// timeout when it was seen, which on a streaming channel waits
// milliseconds.
func Promise(pairUses bool, s *Sighting, now time.Time) (state.SemiSyncCase, string) {
	if s == nil {
		if !pairUses {
			return state.SemiSyncAsync, "the pair does not use semi-sync"
		}
		return state.SemiSyncUnknown, "no sighting of the old writer's semi-sync state (is agentcheck running on this node?)"
	}
	if !pairUses && !s.Enabled && s.FallBacks == 0 && s.Unacked == 0 {
		// A writer that fell back, or committed without an
		// acknowledgement, did use semi-sync: its source side may have
		// been switched off since, and this node's own sides with it.
		return state.SemiSyncAsync, "the pair does not use semi-sync"
	}
	age := now.Sub(s.At)
	switch {
	case age < 0:
		return state.SemiSyncUnknown, fmt.Sprintf("the last sighting of the old writer is dated in the future (%s)", s.At.Format(time.RFC3339Nano))
	case !s.PeerWritable:
		return state.SemiSyncUnknown, fmt.Sprintf("the old writer was last seen read-only, %s ago", age.Round(time.Millisecond))
	case !s.Enabled:
		return state.SemiSyncFallenBack, fmt.Sprintf("the old writer did not wait for acknowledgements (source side off), seen %s ago", age.Round(time.Millisecond))
	case !s.On || s.Clients < 1:
		return state.SemiSyncFallenBack, fmt.Sprintf("the old writer had fallen back to asynchronous replication (%d fall-back(s), %d commits not acknowledged), seen %s ago",
			s.FallBacks, s.Unacked, age.Round(time.Millisecond))
	case !s.SelfAcking:
		return state.SemiSyncFallenBack, fmt.Sprintf("this node was not acknowledging the old writer (its semi-sync replica side off or its channel not streaming), seen %s ago", age.Round(time.Millisecond))
	case s.Clients > max(s.WaitFor, 1):
		return state.SemiSyncFallenBack, fmt.Sprintf("%d replicas acknowledged the old writer and it waited for %d: another replica could acknowledge a write this node never received", s.Clients, max(s.WaitFor, 1))
	case s.Timeout <= 0 || age >= s.Timeout:
		return state.SemiSyncUnknown, fmt.Sprintf("the last sighting of the old writer is %s old, not younger than its semi-sync timeout %s: it may have fallen back since", age.Round(time.Millisecond), s.Timeout)
	}
	return state.SemiSyncKept, fmt.Sprintf("semi-sync was active with this node acknowledging (seen %s ago, timeout %s): every acknowledged write is in this node's relay log", age.Round(time.Millisecond), s.Timeout)
}

// Action is what the role rule asks of the source side.
type Action int

// The actions.
const (
	Keep Action = iota
	EnableSource
	DisableSource
)

func (a Action) String() string {
	switch a {
	case EnableSource:
		return "enable source side"
	case DisableSource:
		return "disable source side"
	}
	return "keep"
}

// RoleInput is what the role rule looks at.
type RoleInput struct {
	Managed bool
	// Local is the local server's semi-sync state.
	Local probe.SemiSync
	// Writable: read_only and super_read_only are off.
	Writable bool
	// Writer: notify's last outcome is a completed, fit promotion.
	Writer bool
	// Standby: notify's last outcome is a completed or failed run that
	// left the node a standby (not one still running).
	Standby bool
	// PeerAcking: the peer answered just now and acknowledges this node
	// (see SelfAcking). The server's own client count is not enough: a
	// dead peer's connection is counted until the server next writes to
	// it, and enabling then makes the next commit wait the whole timeout.
	PeerAcking bool
}

// Role decides whether the source side must change: on for a writer
// whose peer acknowledges it (the peer asked for it by enabling its side),
// off for a read-only standby. Anything in between (a
// promotion or fence still running, a writable node notify did not
// promote) is left alone: notify owns those moments.
func Role(in RoleInput) Action {
	l := in.Local
	if !in.Managed || !l.Source {
		return Keep
	}
	switch {
	case in.Writable && in.Writer && !l.SourceEnabled && l.Clients > 0 && in.PeerAcking:
		return EnableSource
	case !in.Writable && in.Standby && l.SourceEnabled:
		return DisableSource
	}
	return Keep
}
