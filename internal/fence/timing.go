package fence

import (
	"time"

	"github.com/vipguard/vipguard/internal/config"
)

// The timing budget of notify's runs, in one place. The configured bounds
// ([notify] fence_timeout, replication_timeout, peer_timeout,
// promotion_timeout, stop_timeout) are the DBA's; what follows are the
// fixed parts around them and why each has its value.
//
//	fence (BACKUP, FAULT)   fence_timeout + replication_timeout + fenceSlack
//	fence (STOP, DELETED)   stop_timeout, of which stopFenceShare for the fence:
//	                        keepalived SIGKILLs the notify process group about a
//	                        second into its shutdown, so everything must fit
//	promotion (MASTER)      fence_timeout + replication_timeout + peer_timeout +
//	                        promotion_timeout + promoteSlack, plus
//	                        semi_sync.fallen_back_wait
//
// Inside those: SET GLOBAL read_only waits behind a running write for
// lock_wait_timeout (1 s, MySQL's minimum) and is retried while the
// killer ends that write; opening writes has openWritesBound; a frozen
// server is fenced again for fenceRetryFor while it is the newest event.
const (
	// fenceSlack covers what a fence does besides the bounded steps:
	// recording the outcome, resetting stale clients.
	fenceSlack = 2 * time.Second
	// promoteSlack covers lock, version read, outcome writes and opening
	// writes around the bounded steps of a promotion.
	promoteSlack = 5 * time.Second
	// stopFenceShare is the part of stop_timeout the fence itself may use;
	// the rest records the position and resets clients.
	stopFenceShare = 0.7
	// runLockWait and stopRunLockWait bound waiting for another run of
	// notify: a fence can go on without the lock (read_only=ON is always
	// safe), a STOP has no time to wait.
	runLockWait     = time.Second
	stopRunLockWait = 50 * time.Millisecond
	// setReadOnlyBound bounds one SET GLOBAL read_only=ON: longer than
	// the session's lock_wait_timeout, so the server's own timeout (1205,
	// retried while killing) fires first.
	setReadOnlyBound = 2500 * time.Millisecond
	// openWritesBound bounds opening writes: sweeping stale SET read_only
	// sessions, read_only=OFF and its verification.
	openWritesBound = 5 * time.Second
	// openReadOnlyBound bounds the read_only=OFF statement itself.
	openReadOnlyBound = 2 * time.Second
	// leaveReadOnlyBound bounds closing writes again after a signal or a
	// failed open, on a connection of its own.
	leaveReadOnlyBound = 2 * time.Second
	// gateStep is one wait of the catch-up gate: the verdict is read again
	// after each, so a wait that stalls costs one step. Without the old
	// writer's position it is also the least time between the two relay
	// log readings the gate compares; events the old writer sent before
	// it failed have arrived long before (detection alone takes longer),
	// and one step is write downtime after every such failover.
	gateStep = 200 * time.Millisecond
	// fenceRetryFor bounds how long a fence keeps trying a server that
	// does not answer (frozen); a newer event ends it sooner.
	fenceRetryFor = 10 * time.Minute
	// hungGreeting is how long a server may take to greet the fence's
	// first connection before it counts as one that was hung, and gets
	// read_only=ON before anything else (firstShot).
	hungGreeting = 500 * time.Millisecond
	// firstShotBound bounds that first, unverified read_only=ON: longer
	// than the 1 s lock_wait_timeout it runs under, so the server answers.
	firstShotBound = 1500 * time.Millisecond
	// killPoll is how often the killer re-reads the processlist while
	// read_only waits: a write that starts meanwhile is ended within it.
	killPoll = 10 * time.Millisecond
)

// fenceBudget bounds a whole fence run, and the part of it the fence of
// the server itself may use.
func fenceBudget(n config.Notify, stop bool) (run, fence, lockWait time.Duration) {
	if stop {
		run = n.StopTimeout.Duration
		return run, time.Duration(float64(run) * stopFenceShare), stopRunLockWait
	}
	return n.FenceTimeout.Duration + n.ReplicationTimeout.Duration + fenceSlack, n.FenceTimeout.Duration, runLockWait
}

// promoteBudget bounds a whole promotion attempt.
func promoteBudget(n config.Notify) time.Duration {
	return n.FenceTimeout.Duration + n.ReplicationTimeout.Duration + n.PeerTimeout.Duration + n.PromotionTimeout.Duration + promoteSlack
}
