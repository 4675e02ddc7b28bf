package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/vipguard/vipguard/internal/cli"
	"github.com/vipguard/vipguard/internal/nodestatus"
	"github.com/vipguard/vipguard/internal/ops"
	"github.com/vipguard/vipguard/internal/state"
)

type statusCmd struct {
	JSON    bool          `help:"Print one JSON document: {\"local\": ..., \"peer\": ..., \"problems\": [...]}."`
	Timeout time.Duration `default:"3s" help:"Bound on reading the peer's agentcheck."`
}

func (s *statusCmd) run(ctx context.Context, g *cli.Globals, stdout io.Writer) error {
	cfg, err := g.Load()
	if err != nil {
		return err
	}
	v := ops.ReadPair(ctx, cfg, s.Timeout, true)
	if s.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
	} else {
		writeText(stdout, v)
	}
	return pairVerdict(v)
}

// pairVerdict is status's exit: a pair that is wrong (two writers, the
// VIP astray) is a problem; a node or server that could not be read a
// warning.
func pairVerdict(v *ops.Pair) error {
	peerRead := v.Peer != nil && v.Peer.MySQL != nil
	switch {
	case v.Local.MySQL != nil && peerRead && len(v.Problems) > 0:
		return errProblem
	case v.Local.MySQL == nil || (v.PeerConfigured && !peerRead):
		return errWarning
	}
	return nil
}

// writeText renders the view for a terminal; everything that came from a
// server, a state file or the peer is escaped (cli.Printable).
func writeText(w io.Writer, v *ops.Pair) {
	writeNode(w, v.Local, "this node")
	switch {
	case v.LocalAgent == "":
	case v.LocalAgentError != "":
		fmt.Fprintf(w, "  %-13sNOT ANSWERING on %s: %s\n", "daemon:", v.LocalAgent, cli.Printable(v.LocalAgentError))
	default:
		fmt.Fprintf(w, "  %-13sagentcheck answers on %s\n", "daemon:", v.LocalAgent)
	}
	fmt.Fprintln(w)
	switch {
	case v.Peer != nil:
		writeNode(w, v.Peer, "peer, via "+v.PeerAddr)
	case !v.PeerConfigured:
		fmt.Fprintf(w, "peer: %s\n", cli.Printable(v.PeerError))
	case v.PeerAddr == "":
		fmt.Fprintf(w, "peer: UNREACHABLE, state unknown: %s\n", cli.Printable(v.PeerError))
	default:
		fmt.Fprintf(w, "peer (%s): UNREACHABLE, state unknown\n  %s\n", v.PeerAddr, cli.Printable(v.PeerError))
	}
	if v.PeerConfigured {
		fmt.Fprintln(w)
		if len(v.Problems) == 0 && v.Peer != nil {
			fmt.Fprintln(w, "pair: ok")
		}
		for _, p := range v.Problems {
			fmt.Fprintf(w, "pair: %s\n", cli.Printable(p))
		}
	}
}

func writeNode(w io.Writer, s *nodestatus.Status, label string) {
	p := cli.Printable
	line := func(key, format string, a ...any) {
		fmt.Fprintf(w, "  %-13s%s\n", key+":", p(fmt.Sprintf(format, a...)))
	}
	if s.PollAge >= 0 {
		label += fmt.Sprintf(", state of %.1fs ago", s.PollAge)
	}
	fmt.Fprintf(w, "%s (%s)\n", p(s.Host), label)
	line("role", "%s: %s", s.Role, s.Why)
	if s.VIP != nil {
		held := "not here"
		if s.VIP.Held {
			held = "HELD HERE"
		}
		if s.VIP.Error != "" {
			held = "unknown: " + s.VIP.Error
		}
		line("vip", "%s %s", s.VIP.Address, held)
	}
	if m := s.MySQL; m != nil {
		line("mysql", "%s server_id=%d read_only=%v gtid=%s", m.Version, m.ServerID, m.ReadOnly || m.SuperReadOnly, orNone(m.GTID))
		if len(m.Replicas) == 0 {
			line("replication", "none")
		}
		for _, r := range m.Replicas {
			line("replication", "%s", r.Describe())
		}
		if ss := m.SemiSync; ss != nil && (ss.SourceEnabled || ss.ReplicaEnabled) {
			line("semi-sync", "%s (commits acknowledged %d, not %d)", ss.State, ss.Acked, ss.Unacked)
		}
	} else {
		line("mysql", "UNREADABLE: %s", s.PollError)
	}
	if s.Reason == s.Why {
		line("verdict", "%s (as above)", s.Verdict)
	} else {
		line("verdict", "%s: %s", s.Verdict, s.Reason)
	}
	m := state.Maintenance{On: s.Maintenance.On, Reason: s.Maintenance.Reason, By: s.Maintenance.By}
	if s.Maintenance.Since != nil {
		m.Since = *s.Maintenance.Since
	}
	fmt.Fprintf(w, "  %s\n", cli.DescribeMaintenance(m)) // escapes what it shows
	if e := s.Maintenance.Error; e != "" {
		fmt.Fprintf(w, "  %-13s%s\n", "", p("flag unreadable: "+e))
	}
	switch n := s.Notify; {
	case s.NotifyError != "":
		line("notify", "unreadable outcome: %s", s.NotifyError)
	case n == nil:
		line("notify", "no transition recorded")
	default:
		unfit := ""
		if n.Unfit {
			unfit = ", UNFIT"
		}
		line("notify", "keepalived %s, %s, role %s%s, at %s: %s", n.Event, n.Phase, n.Role, unfit, n.At.Format(time.RFC3339), orNone(n.Reason))
		if n.SemiSync != "" {
			line("promotion", "semi-sync said %q of the old writer's acknowledged writes", n.SemiSync)
		}
	}
	line("witnesses", "%s", s.Witnesses)
	for i, a := range s.Answers {
		key := ""
		if i == 0 {
			key = "agentcheck:"
		}
		ans := a.Status
		if a.Weight >= 0 {
			ans += fmt.Sprintf(" %d%%", a.Weight)
		}
		why := p(a.Reason)
		if a.Reason == s.Reason || a.Reason == s.Why {
			why = "(as above)"
		}
		fmt.Fprintf(w, "  %-13s%-10s %-8s %d  %s\n", key, a.Check, ans, a.HTTP, why)
	}
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
