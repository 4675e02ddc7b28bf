package fence

import (
	"errors"
	"fmt"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
)

// The rules of a promotion, as pure functions over what was observed. The
// engine does the I/O (fencing, waiting, opening writes) and asks these at
// each step what follows; the tests table them rule by rule.

// verdict is what a rule decides: go on, or stop with an outcome and the
// error notify exits with.
type verdict struct {
	// Stop ends the promotion read-only with Outcome and Err.
	Stop    bool
	Outcome state.Outcome
	Err     error
	// Warn, when set, is said loudly in the log although the promotion
	// goes on.
	Warn string
}

func goOn() verdict { return verdict{} }

// refuse stops a promotion on a standing reason: the node stays read-only
// and, when unfit, says so to mysqlcheck and agentcheck.
func refuse(event string, unfit bool, base error, why string) verdict {
	return verdict{Stop: true, Err: fmt.Errorf("%w: %s", base, why),
		Outcome: state.Outcome{Event: event, Phase: state.PhaseFailed, Role: state.RoleStandby, Unfit: unfit, Reason: why}}
}

// maintenanceRule: a node in maintenance (or whose flag cannot be read)
// is never promoted; it is not unfit for that.
func maintenanceRule(event string, m state.Maintenance, err error) verdict {
	switch {
	case err != nil:
		return refuse(event, false, ErrRefused, fmt.Sprintf("maintenance flag unreadable (%v): not opening writes", err))
	case m.On:
		return refuse(event, false, ErrRefused, "maintenance mode is on: not opening writes")
	}
	return goOn()
}

// peerFinding is what fencing the peer found.
type peerFinding struct {
	// Reached: the peer's server answered (it read the version).
	Reached bool
	// Err is why the fence did not complete; nil when it did.
	Err error
}

// peerRule decides what the peer fence means for the promotion. A peer
// that answers but could not be fenced may still take writes: refuse,
// whatever the policy (two writers are worse than none). A silent peer is
// dead or this node is the one cut off; only a witness tells which. w is
// nil when no witness was asked (the peer was fenced).
func peerRule(event string, p peerFinding, w *check.Witness) verdict {
	switch {
	case p.Err == nil:
		return goOn()
	case p.Reached:
		return refuse(event, true, ErrRefused, "peer answers but could not be fenced: "+p.Err.Error())
	case w.Isolated():
		return refuse(event, true, ErrRefused, "neither the peer nor any witness answers: this node is the one cut off ("+w.Describe()+")")
	case w.Unguarded():
		return verdict{Warn: "PROMOTING WITHOUT A WITNESS: the peer does not answer and nothing outside the pair says whether it died or this node is cut off; " +
			"if this node is the one cut off, the pair now has two writers (" + witness.NoWitnessWarning + ")"}
	}
	return goOn()
}

// gateRule applies the policy to the catch-up gate: reliability first
// refuses and marks the node unfit; availability first opens writes and
// says what may be lost.
func gateRule(event string, met bool, why string, policy string) verdict {
	switch {
	case met:
		return goOn()
	case policy == config.PolicyReliability:
		return refuse(event, true, ErrGateNotMet, "promotion gate not met: "+why)
	}
	return verdict{Warn: "OPENING WRITES WITHOUT CATCH-UP (availability first): writes of the old writer not applied here may be lost or conflict when it comes back: " + why}
}

// semiSyncRule applies the policy to what semi-sync promises when the old
// writer did not answer. Without the promise, acknowledged writes may be
// missing from this node: reliability first refuses (the old writer, when
// it comes back, holds them), availability first opens and says so.
func semiSyncRule(event string, c state.SemiSyncCase, why string, policy string) verdict {
	switch {
	case c.Safe():
		return goOn()
	case policy == config.PolicyReliability:
		v := refuse(event, true, ErrRefused, "semi-sync cannot vouch for the old writer's acknowledged writes: "+why)
		v.Outcome.SemiSync = c
		return v
	}
	return verdict{Warn: "OPENING WRITES ALTHOUGH ACKNOWLEDGED WRITES MAY BE MISSING (availability first): " + why}
}

// openedOutcome is the outcome of a promotion that opened writes.
func openedOutcome(event string, met bool, why string, c state.SemiSyncCase) state.Outcome {
	o := state.Outcome{Event: event, Phase: state.PhaseDone, Role: state.RoleWriter, SemiSync: c}
	if !met {
		o.Reason = "writes opened without catch-up (availability first): " + why
	}
	if !c.Safe() {
		o.Reason = join(o.Reason, "writes opened although semi-sync could not vouch for the old writer's acknowledged writes ("+string(c)+", availability first)")
	}
	return o
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// interruptedOutcome is what a signal leaves: read-only, not unfit.
func interruptedOutcome(event string) (state.Outcome, error) {
	return state.Outcome{Event: event, Phase: state.PhaseFailed, Role: state.RoleStandby,
		Reason: "promotion interrupted by a signal; left read-only"}, fmt.Errorf("%w: left read-only", ErrInterrupted)
}

// preemptedOutcome is what the peer's fence killing our connection leaves.
func preemptedOutcome(event string, err error) (state.Outcome, error) {
	return state.Outcome{Event: event, Phase: state.PhaseFailed, Role: state.RoleStandby,
		Reason: "promotion preempted: the peer fenced this node"}, fmt.Errorf("%w: %w", ErrPreempted, err)
}

// openFailedOutcome is what a failed read_only=OFF leaves: read-only again
// and unfit, since the server refused what a writer must do.
func openFailedOutcome(event string, err error) (state.Outcome, error) {
	return state.Outcome{Event: event, Phase: state.PhaseFailed, Role: state.RoleStandby, Unfit: true,
		Reason: "opening writes failed: " + err.Error()}, fmt.Errorf("opening writes: %w", err)
}

// errNoPeer is the peer fence's answer when no peer is configured: the
// node cannot fence anyone and waits for its own relay log.
var errNoPeer = errors.New("no [peer] configured")
