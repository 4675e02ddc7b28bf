package agent

import (
	"encoding/json"
	"net"
	"os"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/cli"
	"github.com/vipguard/vipguard/internal/nodestatus"
)

// The status document (GET /status.json): what vipguard status and
// switchover read of the peer. Like every answer it comes from the cached
// poll and the state files; it never queries MySQL.

// statusRoles are the checks whose answers the document lists.
var statusRoles = []Role{RoleWriter, RoleReader, RoleReadOnly, RoleHealth}

// NodeStatus is this node's status document as of now. w is the witness
// probe's result, nil when not asked: the HTTP endpoint never probes, it
// names the witness set instead.
func (s *Server) NodeStatus(now time.Time, w *check.Witness) nodestatus.Status {
	cfg := s.Config()
	pol := s.Policy()
	in := s.Input(now)
	host, _ := os.Hostname()
	ni := nodestatus.Input{Host: host, Version: cli.VersionString(), Now: now, Check: cfg.Check,
		VIPAddress: cfg.VIP.Address, Timeout: pol.Timeout,
		Maintenance: in.Maintenance, MaintErr: in.MaintErr, Outcome: in.Outcome, OutcomeErr: in.OutcomeErr,
		Witness: w}
	if p := in.Poll; p != nil {
		ni.Snapshot, ni.PollErr, ni.PollAt = p.Snapshot, p.Err, p.At
	}
	if w == nil {
		ni.Witnesses = nodestatus.DescribeWitnessSet(check.Witnesses(cfg))
	}
	if cfg.VIP.Address != "" {
		held, err := holdsAddress(cfg.VIP.Address)
		if err == nil {
			ni.VIPHeld = &held
		}
		ni.VIPHeldErr = err
	}
	for _, r := range statusRoles {
		a := Decide(pol, r, in, 0)
		ni.Answers = append(ni.Answers, nodestatus.Answer{Check: r.String(), Status: a.Verdict.String(),
			Weight: a.Weight, HTTP: a.HTTPStatus(), Reason: a.Reason})
	}
	return nodestatus.Build(ni)
}

// appendStatusJSON renders the document (json escapes what the server or
// state_dir put in the strings; readers escape again for terminals).
func (s *Server) appendStatusJSON(b []byte, now time.Time) []byte {
	data, err := json.Marshal(s.NodeStatus(now, nil))
	if err != nil {
		return appendErrorBody(b, "cannot render the status document")
	}
	return append(append(b, data...), '\n')
}

// holdsAddress reports whether addr is configured on a local interface.
func holdsAddress(addr string) (bool, error) {
	ip := net.ParseIP(addr)
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true, nil
		}
	}
	return false, nil
}
