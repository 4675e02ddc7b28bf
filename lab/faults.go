package lab

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
)

// The fault injectors. Each does one thing to one node and returns; the
// scenarios decide what to wait for. Recover undoes all of them.

// KillMySQL ends mariadbd on a node with SIGKILL (a crash).
func (l *Lab) KillMySQL(name string) { l.Nodes[name].DB.Kill() }

// FreezeMySQL stops mariadbd with SIGSTOP: connections are accepted by the
// kernel but nothing answers, the failure a naive check hangs on.
func (l *Lab) FreezeMySQL(name string) error { return l.Nodes[name].DB.Freeze() }

// ThawMySQL resumes a frozen mariadbd.
func (l *Lab) ThawMySQL(name string) error { return l.Nodes[name].DB.Thaw() }

// StartMySQL starts mariadbd again on its datadir if it is not running
// (read_only=ON from its startup options; replication restarts by itself).
func (l *Lab) StartMySQL(ctx context.Context, name string) error {
	s := l.Nodes[name].DB
	if !s.Exited() {
		return nil
	}
	return s.Start(ctx)
}

// CrashKeepalived SIGKILLs keepalived on a node: no priority-0 advert, the
// VIP stays configured on the node although nobody manages it.
func (l *Lab) CrashKeepalived(name string) { l.Nodes[name].keepalived.kill() }

// CutLink takes a node off the network (its switch port goes down).
func (l *Lab) CutLink(ctx context.Context, name string) error { return l.Net.Cut(ctx, name) }

// Partition isolates a node while its link stays up.
func (l *Lab) Partition(ctx context.Context, name string) error { return l.Net.Partition(ctx, name) }

// HealLink puts a node back on the network.
func (l *Lab) HealLink(ctx context.Context, name string) error { return l.Net.Heal(ctx, name) }

// StopReplicaThread stops the replica's SQL_THREAD or IO_THREAD on a node.
func (l *Lab) StopReplicaThread(ctx context.Context, name, thread string) error {
	if thread != "SQL_THREAD" && thread != "IO_THREAD" {
		return fmt.Errorf("unknown replica thread %q", thread)
	}
	return l.Nodes[name].DB.Exec(ctx, "STOP SLAVE "+thread)
}

// BreakReplication stops the standby's applier on an error no restart
// mends: a row written on the standby alone (sql_log_bin=0), then the same
// key on the writer, stops its SQL thread with 1062. The returned mend
// removes the row and starts the applier, as a DBA would, then restarts the
// standby's keepalived: notify marked the node unfit when it could not
// restart replication, and only a new transition clears that.
func (l *Lab) BreakReplication(ctx context.Context, standby, writer string) (mend func(context.Context) error, err error) {
	key := fmt.Sprintf("conflict-%d", time.Now().UnixNano())
	row := "INSERT INTO vgtest.lab_writes (k, path, server_id) VALUES ('" + key + "', 'lab', @@server_id)"
	if err := l.Nodes[standby].DB.Exec(ctx, "SET SESSION sql_log_bin=0", row); err != nil {
		return nil, err
	}
	if err := l.Nodes[writer].DB.Exec(ctx, row); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		if err := l.Nodes[standby].DB.Exec(ctx, "SET SESSION sql_log_bin=0", "DELETE FROM vgtest.lab_writes WHERE k = '"+key+"'", "START SLAVE"); err != nil {
			return err
		}
		l.StopKeepalived(standby)
		return l.StartKeepalived(standby)
	}, nil
}

// SetReplicationDelay makes a node apply its source's events delay late
// (MASTER_DELAY); 0 removes the delay.
func (l *Lab) SetReplicationDelay(ctx context.Context, name string, delay time.Duration) error {
	return l.execThroughFences(ctx, name, "STOP SLAVE",
		"CHANGE MASTER TO MASTER_DELAY="+strconv.Itoa(int(delay.Seconds())), "START SLAVE")
}

// execThroughFences runs statements on a node as root, again from the
// first when a fence running there killed the session: notify kills every
// client thread, the lab's own included, and a scenario that just made a
// node unfit is often recovering it while that node's FAULT fence runs.
// The statements must be safe to repeat.
func (l *Lab) execThroughFences(ctx context.Context, name string, stmts ...string) error {
	var err error
	for range 5 {
		if err = l.Nodes[name].DB.Exec(ctx, stmts...); !probe.ConnectionLost(err) {
			return err
		}
		l.logf("%s: session killed (a fence?), again: %v", name, err)
		if serr := sleep(ctx, 200*time.Millisecond); serr != nil {
			return serr
		}
	}
	return err
}

// Maintenance turns the node's maintenance flag on or off with mysqlcheck's
// own switch, as an operator would.
func (l *Lab) Maintenance(ctx context.Context, name string, on bool, reason string) error {
	args := []string{"maint", "off"}
	if on {
		args = []string{"maint", "on", "--reason", reason}
	}
	if r := l.Mysqlcheck(ctx, name, args...); r.Exit != 0 {
		return fmt.Errorf("mysqlcheck %v on %s: %s", args, name, r)
	}
	return nil
}

// Recover undoes every fault on both nodes (thaw, start mysqld, heal links,
// maintenance off, replication running without delay, keepalived running)
// and waits for the clean state. It does not move the VIP back: with
// nopreempt it stays where the last failover put it.
func (l *Lab) Recover(ctx context.Context, limit time.Duration) error {
	var errs []error
	for _, name := range []string{"db1", "db2"} {
		_ = l.ThawMySQL(name)
		if err := l.HealLink(ctx, name); err != nil {
			errs = append(errs, err)
		}
		if err := l.StartMySQL(ctx, name); err != nil {
			errs = append(errs, err)
		}
		if err := l.Maintenance(ctx, name, false, ""); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range []string{"db1", "db2"} {
		st, err := l.ReplicationStatus(ctx, name)
		for i := 0; i < 5 && probe.ConnectionLost(err); i++ {
			// A fence there killed the session (see execThroughFences).
			if err = sleep(ctx, 200*time.Millisecond); err == nil {
				st, err = l.ReplicationStatus(ctx, name)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st["SQL_Delay"] != "0" && st["SQL_Delay"] != "" {
			if err := l.SetReplicationDelay(ctx, name, 0); err != nil {
				errs = append(errs, err)
			}
		} else if st["Slave_IO_Running"] == "No" || st["Slave_SQL_Running"] != "Yes" {
			if err := l.execThroughFences(ctx, name, "START SLAVE"); err != nil {
				errs = append(errs, err)
			}
		}
		if err := l.StartKeepalived(name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("recovering the lab: %w", err)
	}
	// As an operator would: an IO thread that stopped on an error while
	// the nodes came back (MariaDB error 1236 when a restarted node asks
	// its peer for its own last GTIDs before the peer has applied them) is
	// started again, a bounded number of times, while waiting for the
	// clean state. Each restart is logged, so a scenario that needs it shows.
	deadline := time.Now().Add(limit)
	for i := 0; ; i++ {
		err := l.WaitStable(ctx, min(10*time.Second, time.Until(deadline)))
		if err == nil || time.Now().After(deadline) || i >= 8 {
			return err
		}
		for _, name := range []string{"db1", "db2"} {
			if st, err := l.ReplicationStatus(ctx, name); err == nil && st["Slave_IO_Running"] == "No" && st["Last_IO_Errno"] != "0" {
				l.logf("recover: %s: replication IO thread stopped on error %s (%s): START SLAVE", name, st["Last_IO_Errno"], st["Last_IO_Error"])
				_ = l.Nodes[name].DB.Exec(ctx, "START SLAVE")
			}
		}
	}
}
