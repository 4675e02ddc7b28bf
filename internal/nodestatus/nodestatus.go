// Package nodestatus is one node's state as an operator reads it: the
// document agentcheck serves on GET /status.json, and what vipguard status
// shows for each node of the pair.
//
// Build turns what was read (the server snapshot, the state files, the
// verdict, agentcheck's answers) into the document, and Role names what
// the node is — writer, fenced, standby, unfit or unknown — both pure
// functions. Fetch reads the peer's document over HTTP.
package nodestatus

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
)

// Path is where agentcheck serves the document.
const Path = "/status.json"

// Format is the document's version; a reader refuses others.
const Format = 1

// Roles a node can have.
const (
	// RoleWriter: read_only=OFF.
	RoleWriter = "writer"
	// RoleFenced: read-only, fit, and notify's last run was a completed
	// fence (its final position recorded): a standby that gave up the VIP.
	RoleFenced = "fenced"
	// RoleStandby: read-only and fit, no fence recorded.
	RoleStandby = "standby"
	// RoleUnfit: read-only and unfit to hold the VIP (see Status.Reason).
	RoleUnfit = "unfit"
	// RoleUnknown: the server could not be read.
	RoleUnknown = "unknown"
)

// Status is one node's state.
type Status struct {
	Format int `json:"format"`
	// Host is the node's host name; Version vipguard's.
	Host    string    `json:"host"`
	Version string    `json:"vipguard_version"`
	At      time.Time `json:"at"`
	// Role and why the node has it.
	Role string `json:"role"`
	Why  string `json:"why"`
	// Fit, Verdict and Reason are mysqlcheck's verdict on the same state
	// (witnesses: see Witnesses).
	Fit     bool   `json:"fit"`
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	// PollAge is the age of the server state in seconds (-1: none yet).
	PollAge   float64 `json:"poll_age_seconds"`
	PollError string  `json:"poll_error,omitempty"`
	MySQL     *MySQL  `json:"mysql,omitempty"`
	// VIP is nil when no vip.address is configured.
	VIP         *VIP        `json:"vip,omitempty"`
	Maintenance Maintenance `json:"maintenance"`
	// Notify is notify's last outcome here, nil when it never ran.
	Notify      *Notify `json:"notify,omitempty"`
	NotifyError string  `json:"notify_error,omitempty"`
	Witnesses   string  `json:"witnesses"`
	// Answers are what agentcheck answers HAProxy for each check.
	Answers []Answer `json:"answers"`
}

// MySQL is the server's state.
type MySQL struct {
	Version       string `json:"version"`
	ServerID      uint32 `json:"server_id"`
	ReadOnly      bool   `json:"read_only"`
	SuperReadOnly bool   `json:"super_read_only,omitempty"`
	// GTID is what the server logged: MariaDB gtid_binlog_pos, MySQL
	// gtid_executed. GTIDCurrent is MariaDB's gtid_current_pos.
	GTID        string    `json:"gtid,omitempty"`
	GTIDCurrent string    `json:"gtid_current,omitempty"`
	Replicas    []Replica `json:"replicas"`
	// SemiSync is nil when the server has no semi-sync.
	SemiSync *SemiSync `json:"semi_sync,omitempty"`
}

// SemiSync is the server's semi-synchronous replication state.
type SemiSync struct {
	// State says it in words.
	State string `json:"state"`
	// The source side: enabled, not fallen back (on), waiting for an
	// acknowledgement from a connected replica (active).
	SourceEnabled bool  `json:"source_enabled"`
	SourceOn      bool  `json:"source_on"`
	Active        bool  `json:"active"`
	Clients       int   `json:"clients"`
	TimeoutMS     int64 `json:"timeout_ms"`
	// FallBacks counts fall-backs to asynchronous; Acked and Unacked the
	// commits acknowledged by a replica or not, since the server started.
	FallBacks uint64 `json:"fall_backs"`
	Acked     uint64 `json:"acked_commits"`
	Unacked   uint64 `json:"unacked_commits"`
	// The replica side: enabled, and connected as an acknowledging replica.
	ReplicaEnabled bool `json:"replica_enabled"`
	ReplicaOn      bool `json:"replica_on"`
}

// Replica is one replication channel.
type Replica struct {
	Channel        string `json:"channel,omitempty"`
	Source         string `json:"source"`
	SourceServerID uint32 `json:"source_server_id"`
	IO             string `json:"io"`
	SQL            bool   `json:"sql"`
	Health         string `json:"health"`
	Problem        string `json:"problem,omitempty"`
	// Lag is Seconds_Behind_Master (nil: NULL).
	Lag *int64 `json:"lag_seconds"`
	// Received is the GTID position received (MariaDB Gtid_IO_Pos, MySQL
	// Retrieved_Gtid_Set); Applied the source coordinates applied.
	Received string `json:"received,omitempty"`
	Applied  string `json:"applied,omitempty"`
}

// VIP says whether the node holds the VIP.
type VIP struct {
	Address string `json:"address"`
	Held    bool   `json:"held"`
	Error   string `json:"error,omitempty"`
}

// Maintenance is the maintenance flag.
type Maintenance struct {
	On     bool       `json:"on"`
	Since  *time.Time `json:"since,omitempty"`
	By     string     `json:"by,omitempty"`
	Reason string     `json:"reason,omitempty"`
	Error  string     `json:"error,omitempty"`
}

// Notify is notify's last outcome.
type Notify struct {
	Event         string    `json:"event"`
	Phase         string    `json:"phase"`
	Role          string    `json:"role"`
	Unfit         bool      `json:"unfit"`
	Reason        string    `json:"reason,omitempty"`
	At            time.Time `json:"at"`
	FinalPosition string    `json:"final_position,omitempty"`
	Generation    uint64    `json:"generation,omitempty"`
	// SemiSync is what semi-sync promised at the last promotion.
	SemiSync string `json:"semi_sync,omitempty"`
}

// Answer is agentcheck's answer to one check.
type Answer struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	// Weight in percent, -1 for none.
	Weight int    `json:"weight"`
	HTTP   int    `json:"http"`
	Reason string `json:"reason"`
}

// Input is what Build makes a document of.
type Input struct {
	Host, Version string
	Now           time.Time
	Check         config.Check
	VIPAddress    string
	// The last poll: its snapshot or error, and when it ended (zero: no
	// poll yet).
	Snapshot *probe.Snapshot
	PollErr  error
	PollAt   time.Time
	// Timeout is the poll deadline, for messages.
	Timeout     time.Duration
	Maintenance state.Maintenance
	MaintErr    error
	Outcome     *state.Outcome
	OutcomeErr  error
	// Witness is the witness probe's result, nil when not asked;
	// Witnesses describes the set when not asked.
	Witness   *check.Witness
	Witnesses string
	// VIPHeld says whether the VIP is on a local interface (nil: unknown).
	VIPHeld    *bool
	VIPHeldErr error
	Answers    []Answer
}

// Build makes the document.
func Build(in Input) Status {
	st := Status{Format: Format, Host: in.Host, Version: in.Version, At: in.Now.UTC(), PollAge: -1,
		Witnesses: in.Witnesses, Answers: in.Answers}
	if !in.PollAt.IsZero() {
		st.PollAge = in.Now.Sub(in.PollAt).Seconds()
	}
	if in.PollErr != nil {
		st.PollError = in.PollErr.Error()
	}
	if in.Witness != nil {
		st.Witnesses = in.Witness.Describe()
	}
	m := in.Maintenance
	st.Maintenance = Maintenance{On: m.On, By: m.By, Reason: m.Reason}
	if !m.Since.IsZero() {
		t := m.Since.UTC()
		st.Maintenance.Since = &t
	}
	if in.MaintErr != nil {
		st.Maintenance.Error = in.MaintErr.Error()
	}
	if o := in.Outcome; o != nil {
		st.Notify = &Notify{Event: o.Event, Phase: string(o.Phase), Role: string(o.Role), Unfit: o.Unfit,
			Reason: o.Reason, At: o.At.UTC(), FinalPosition: o.FinalPosition, Generation: o.Generation,
			SemiSync: string(o.SemiSync)}
	}
	if in.OutcomeErr != nil {
		st.NotifyError = in.OutcomeErr.Error()
	}
	if in.VIPAddress != "" {
		st.VIP = &VIP{Address: in.VIPAddress}
		if in.VIPHeld != nil {
			st.VIP.Held = *in.VIPHeld
		}
		if in.VIPHeldErr != nil {
			st.VIP.Error = in.VIPHeldErr.Error()
		}
	}
	if s := in.Snapshot; s != nil && in.PollErr == nil {
		st.MySQL = mysqlOf(s)
	}
	cin := check.Input{Snapshot: in.Snapshot, SnapshotErr: in.PollErr, Maintenance: in.Maintenance,
		Outcome: in.Outcome, OutcomeErr: in.OutcomeErr, Timeout: in.Timeout, Witness: in.Witness}
	if in.PollAt.IsZero() && in.PollErr == nil && in.Snapshot == nil {
		cin.SnapshotErr = fmt.Errorf("no poll has completed yet")
	}
	v := check.Evaluate(in.Check, cin)
	st.Fit, st.Verdict, st.Reason = v.Fit, v.Status.String(), v.Reason
	st.Role, st.Why = Role(cin.SnapshotErr, in.Snapshot, v, in.Outcome)
	return st
}

func mysqlOf(s *probe.Snapshot) *MySQL {
	m := &MySQL{Version: s.Version.String(), ServerID: s.ServerID, ReadOnly: s.ReadOnly, SuperReadOnly: s.SuperReadOnly,
		GTID: s.GTIDBinlogPos, GTIDCurrent: s.GTIDCurrentPos, Replicas: []Replica{}}
	if s.Version.Flavor != probe.MariaDB {
		m.GTID, m.GTIDCurrent = s.GTIDExecuted, ""
	}
	if ss := s.SemiSync; ss != nil && ss.Available {
		m.SemiSync = &SemiSync{State: ss.Describe(), SourceEnabled: ss.SourceEnabled, SourceOn: ss.SourceOn, Active: ss.Active(),
			Clients: ss.Clients, TimeoutMS: ss.Timeout.Milliseconds(), FallBacks: ss.FallBacks, Acked: ss.Acked, Unacked: ss.Unacked,
			ReplicaEnabled: ss.ReplicaEnabled, ReplicaOn: ss.ReplicaOn}
	}
	for _, r := range s.Replicas {
		rep := Replica{Channel: r.Channel, Source: net.JoinHostPort(r.SourceHost, strconv.Itoa(r.SourcePort)),
			SourceServerID: r.SourceServerID, IO: string(r.IORunning), SQL: r.SQLRunning,
			Health: r.Health().String(), Problem: r.Problem(), Lag: r.SecondsBehind,
			Received: r.GTIDIOPos}
		if rep.Received == "" {
			rep.Received = r.RetrievedSet
		}
		if r.RelaySourceLogFile != "" {
			rep.Applied = r.RelaySourceLogFile + ":" + strconv.FormatUint(r.ExecSourceLogPos, 10)
		}
		m.Replicas = append(m.Replicas, rep)
	}
	return m
}

// Role names what the node is, and why: unknown when the server could not
// be read; writer when it is writable (whatever else is wrong: that is
// where writes go); unfit when read-only and mysqlcheck says unfit; fenced
// when read-only, fit, and notify's last run fenced it; standby otherwise.
func Role(pollErr error, s *probe.Snapshot, v check.Verdict, o *state.Outcome) (role, why string) {
	switch {
	case pollErr != nil || s == nil:
		return RoleUnknown, v.Reason
	case s.Writable():
		if o.Promoted() {
			return RoleWriter, fmt.Sprintf("read_only=OFF, promoted by notify (%s at %s)", o.Event, stamp(o.At))
		}
		return RoleWriter, "read_only=OFF, but notify has not completed a promotion here: " + v.Reason
	case !v.Fit:
		return RoleUnfit, v.Reason
	case o != nil && o.Role == state.RoleStandby && o.Phase == state.PhaseDone && !o.Unfit:
		why := fmt.Sprintf("fenced by notify (%s at %s)", o.Event, stamp(o.At))
		if o.FinalPosition != "" {
			why += ", final position " + o.FinalPosition
		}
		return RoleFenced, why + "; " + v.Reason
	}
	return RoleStandby, v.Reason
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// PeerAddress is the peer agentcheck's HTTP address: peer.agent, or
// peer.host with the port of agent.http_listen.
func PeerAddress(cfg *config.Config) (string, error) {
	if cfg.Peer.Agent != "" {
		return cfg.Peer.Agent, nil
	}
	if cfg.Peer.Host == "" {
		return "", fmt.Errorf("no peer configured (set [peer] host)")
	}
	_, port, err := net.SplitHostPort(cfg.Agent.HTTPListen)
	if err != nil || port == "" {
		return "", fmt.Errorf("agent.http_listen is empty: set [peer] agent to the peer agentcheck's HTTP address")
	}
	return net.JoinHostPort(cfg.Peer.Host, port), nil
}

// PairProblems says what is wrong with the pair as a whole, seen from both
// documents (nil: that node could not be read).
func PairProblems(a, b *Status) []string {
	var out []string
	if a == nil || b == nil {
		return []string{"one node's state is unknown: the pair cannot be judged"}
	}
	wa, wb := a.Role == RoleWriter, b.Role == RoleWriter
	switch {
	case wa && wb:
		out = append(out, "BOTH NODES ARE WRITABLE")
	case !wa && !wb && a.MySQL != nil && b.MySQL != nil:
		out = append(out, "no writer: both nodes are read-only")
	}
	va, vb := a.VIP != nil && a.VIP.Held, b.VIP != nil && b.VIP.Held
	switch {
	case va && vb:
		out = append(out, "both nodes hold the VIP")
	case !va && !vb && a.VIP != nil && b.VIP != nil:
		out = append(out, "no node holds the VIP")
	case va && !wa && a.MySQL != nil:
		out = append(out, a.Host+" holds the VIP but is not writable")
	case vb && !wb && b.MySQL != nil:
		out = append(out, b.Host+" holds the VIP but is not writable")
	}
	return out
}

// Writer reports whether the document shows a completed promotion:
// writable, and notify's last run a done, fit promotion.
func (s *Status) Writer() bool {
	return s != nil && s.MySQL != nil && !s.MySQL.ReadOnly && !s.MySQL.SuperReadOnly &&
		s.Notify != nil && s.Notify.Role == string(state.RoleWriter) && s.Notify.Phase == string(state.PhaseDone) && !s.Notify.Unfit
}

// MaxLag is the largest lag of its channels (ok false: none known).
func (s *Status) MaxLag() (lag time.Duration, ok bool) {
	if s == nil || s.MySQL == nil {
		return 0, false
	}
	for _, r := range s.MySQL.Replicas {
		if r.Lag != nil {
			if d := time.Duration(*r.Lag) * time.Second; !ok || d > lag {
				lag, ok = d, true
			}
		}
	}
	return lag, ok
}

// Streaming reports whether every channel streams (and there is one).
func (s *Status) Streaming() bool {
	if s == nil || s.MySQL == nil || len(s.MySQL.Replicas) == 0 {
		return false
	}
	for _, r := range s.MySQL.Replicas {
		if r.Health != probe.Streaming.String() {
			return false
		}
	}
	return true
}

// Describe sums a replica up in one line.
func (r Replica) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "from %s (server_id %d): IO %s, SQL %s", r.Source, r.SourceServerID, r.IO, yesNo(r.SQL))
	if r.Lag != nil {
		fmt.Fprintf(&b, ", lag %ds", *r.Lag)
	} else {
		b.WriteString(", lag unknown")
	}
	if r.Received != "" {
		fmt.Fprintf(&b, ", received %s", r.Received)
	}
	if r.Problem != "" {
		fmt.Fprintf(&b, "; %s", r.Problem)
	}
	return b.String()
}

func yesNo(b bool) string {
	if b {
		return "Yes"
	}
	return "No"
}

// DescribeWitnessSet names the witnesses a node asks (check.Witnesses'
// result), without asking them.
func DescribeWitnessSet(set witness.Set, err error) string {
	if err != nil {
		return err.Error()
	}
	return set.Describe()
}
