package lab

// The read replica behind the pair (issue 10): db3 replicates from the VIP
// by GTID, as docs/read-replicas.md tells a DBA to set one up, and serves
// reads through HAProxy's reader backend as its agentcheck says. Nobody
// touches it across failovers: following the writer is its own job.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
	"github.com/vipguard/vipguard/testsupport/mariadbtest"
)

// ReplicaServerID is db3's server_id; its gtid_domain_id is the same, apart
// from the pair's. It never writes, but a stray write there (a DBA's
// mistake) then shows as its own domain instead of forging one of the
// pair's.
const ReplicaServerID = 3

// replicaChangeMaster points the replica at the VIP. MASTER_USE_GTID=
// slave_pos is the whole point: after a failover the replica asks the new
// writer for the GTIDs it lacks, which every node has (log_slave_updates),
// where a binlog file and offset would mean nothing on another server.
// The account is mariadbtest's repl, which every server of the lab has
// (created with sql_log_bin=0 at bootstrap, so db1 and db2 each hold it).
// Connect retry 1 s and heartbeat 1 s (with the servers' slave_net_timeout
// of 4 s) let it notice a VIP move that left its connection hanging on a
// node that no longer holds the address.
var replicaChangeMaster = fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', "+
	"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
	VIP, MySQLPort, mariadbtest.ReplUser, mariadbtest.ReplPassword)

// AddReplica adds the read replica to the running lab, as a DBA adds one
// behind a running pair: its host, mariadbd (read_only, no semi-sync ACK),
// the accounts, replication from the VIP from the beginning of the
// writer's binlog, agentcheck with a config without [peer], and its server
// line in HAProxy's reader backend (HAProxy is restarted on the new file).
// It returns once HAProxy has the replica UP as a reader.
func (l *Lab) AddReplica(ctx context.Context) error {
	if l.Nodes[ReplicaHost] != nil {
		return nil
	}
	start := time.Now()
	holder, err := l.Holder(ctx)
	if err != nil {
		return err
	}
	if holder != "db1" && holder != "db2" {
		return fmt.Errorf("adding the replica: VIP holder is %q", holder)
	}
	if err := l.Net.AddHost(ctx, ReplicaHost); err != nil {
		return err
	}
	dir := filepath.Join(l.Dir, ReplicaHost)
	tmp := filepath.Join(dir, "tmp")
	for _, d := range []string{filepath.Join(dir, "state"), tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	o := mariadbtest.Options{ServerID: ReplicaServerID, DomainID: ReplicaServerID, BindAddress: "0.0.0.0", Host: DB3Addr,
		Port: MySQLPort, Wrap: l.Net.Wrap(ReplicaHost), Dir: dir, ReadOnly: true,
		// Explicitly no semi-sync ACK (MariaDB's default): an ACK from a
		// replica lets the writer commit what the standby has not
		// received, which a failover then loses.
		Args: []string{"--tmpdir=" + tmp, "--rpl-semi-sync-slave-enabled=OFF"}}
	s, err := launchWithTmpdir(ctx, o, tmp)
	if err != nil {
		return fmt.Errorf("starting mariadbd on %s: %w", ReplicaHost, err)
	}
	n := &Node{Name: ReplicaHost, Addr: DB3Addr, DB: s, Dir: dir,
		Config: filepath.Join(dir, "vipguard.toml"), StateDir: filepath.Join(dir, "state"),
		AgentLog: filepath.Join(dir, "agentcheck.log")}
	// Recorded at once so Close destroys it whatever fails next.
	l.Nodes[ReplicaHost] = n
	// HAProxy's mysql-check account and vipguard's (agentcheck only reads;
	// the grants are the pair's, as the README has one block per version).
	acct := fmt.Sprintf("'%s'@'localhost'", AdminUser)
	if err := s.Exec(ctx, "SET SESSION sql_log_bin=0", "CREATE USER 'haproxy_check'@'"+ProxyAddr+"'",
		"CREATE USER "+acct+" IDENTIFIED BY '"+AdminPassword+"'", "GRANT "+AdminGrants+" ON *.* TO "+acct); err != nil {
		return err
	}
	if err := s.Exec(ctx, replicaChangeMaster, "START SLAVE"); err != nil {
		return err
	}
	if err := s.WaitReplicating(ctx, 20*time.Second); err != nil {
		return err
	}
	if err := s.SyncWith(ctx, l.Nodes[holder].DB, 60*time.Second); err != nil {
		return fmt.Errorf("replica catching up with %s: %w", holder, err)
	}
	if err := writeClientCnf(n); err != nil {
		return err
	}
	if err := writeReplicaTOML(n); err != nil {
		return err
	}
	if err := l.StartAgent(ReplicaHost); err != nil {
		return err
	}
	if err := l.writeHAProxyConfig(ctx); err != nil {
		return err
	}
	if err := l.RestartHAProxy(holder); err != nil {
		return err
	}
	if _, _, err := l.WaitHAProxy(ctx, "mysql_reader/"+ReplicaHost, func(s ServerStat) bool { return s.Status == "UP" }, 20*time.Second); err != nil {
		return fmt.Errorf("replica added: %w", err)
	}
	l.logf("lab %s: read replica %s replicating from the VIP, a reader in HAProxy (%s)", l.Net.Prefix, ReplicaHost,
		time.Since(start).Round(time.Millisecond))
	return nil
}

// writeReplicaTOML writes the replica's vipguard.toml: no [peer] (it is
// no member of the pair, so agentcheck checks that its channels can follow
// the VIP), and no [vip] or [notify] (keepalived and notify do not run
// there).
func writeReplicaTOML(n *Node) error {
	mysql, agent := mysqlAndAgentTOML(n)
	return writeTOML(n, fmt.Sprintf(`# vipguard config of the lab's read replica %s (written by the lab):
# agentcheck answers HAProxy's reader checks; no [peer], no [vip], no
# [notify]: it is no member of the pair.
state_dir = %q

%s
%s`, n.Name, n.StateDir, mysql, agent))
}

// RemoveReplica undoes AddReplica: agentcheck and mariadbd stopped, the
// host gone, HAProxy restarted without the replica's server line.
func (l *Lab) RemoveReplica(ctx context.Context) error {
	n := l.Nodes[ReplicaHost]
	if n == nil {
		return nil
	}
	n.agent.stop(3 * time.Second)
	n.DB.Destroy()
	delete(l.Nodes, ReplicaHost)
	errs := []error{l.Net.RemoveHost(ctx, ReplicaHost), os.RemoveAll(n.Dir)}
	holder, err := l.Holder(ctx)
	if err == nil && holder != "db1" && holder != "db2" {
		err = fmt.Errorf("removing the replica: VIP holder is %q", holder)
	}
	if err == nil {
		err = l.writeHAProxyConfig(ctx)
	}
	if err == nil {
		err = l.RestartHAProxy(holder)
	}
	return errors.Join(append(errs, err)...)
}

// replicaProblem says why the replica does not follow writer, "" when it
// does: its channel points at the VIP, finds its place by GTID, streams
// from writer (Master_Server_Id) with both threads running and no error but
// a past "cannot reach the source" one (the VIP moving).
func (l *Lab) replicaProblem(ctx context.Context, writer string) string {
	st, err := l.ReplicationStatus(ctx, ReplicaHost)
	if err != nil {
		return err.Error()
	}
	ioErrno, _ := strconv.Atoi(st["Last_IO_Errno"])
	want := strconv.FormatUint(uint64(l.Nodes[writer].DB.Opts.ServerID), 10)
	switch {
	case st["Master_Host"] != VIP || st["Master_Port"] != strconv.Itoa(MySQLPort):
		return fmt.Sprintf("replicates from %s:%s, not the VIP", st["Master_Host"], st["Master_Port"])
	case st["Using_Gtid"] != "Slave_Pos":
		return fmt.Sprintf("Using_Gtid=%s, not Slave_Pos", st["Using_Gtid"])
	case st["Last_SQL_Errno"] != "0" || st["Slave_SQL_Running"] != "Yes":
		return fmt.Sprintf("SQL thread %s, error %s: %s", st["Slave_SQL_Running"], st["Last_SQL_Errno"], st["Last_SQL_Error"])
	case ioErrno != 0 && !probe.SourceUnreachableError(ioErrno, st["Last_IO_Error"]):
		return fmt.Sprintf("IO thread %s, error %d: %s", st["Slave_IO_Running"], ioErrno, st["Last_IO_Error"])
	case st["Slave_IO_Running"] != "Yes":
		return fmt.Sprintf("IO thread %s (last error %d: %s)", st["Slave_IO_Running"], ioErrno, st["Last_IO_Error"])
	case st["Master_Server_Id"] != want:
		return fmt.Sprintf("streams from server_id %s, not %s's %s", st["Master_Server_Id"], writer, want)
	}
	return ""
}

// WaitReplicaFollows waits until the replica streams from writer (see
// replicaProblem) and returns how long that took.
func (l *Lab) WaitReplicaFollows(ctx context.Context, writer string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	problem := ""
	for time.Since(start) < limit {
		if problem = l.replicaProblem(ctx, writer); problem == "" {
			return time.Since(start), nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return time.Since(start), err
		}
	}
	return time.Since(start), fmt.Errorf("replica %s does not follow %s within %s: %s", ReplicaHost, writer, limit, problem)
}

// VerifyReplica checks, once the replica has caught up with writer, that
// its lab_writes is the writer's (row count and CHECKSUM TABLE) and that
// it holds every acknowledged key.
func (l *Lab) VerifyReplica(ctx context.Context, writer string, acked []string) error {
	if err := l.Nodes[ReplicaHost].DB.SyncWith(ctx, l.Nodes[writer].DB, 30*time.Second); err != nil {
		return fmt.Errorf("replica catching up with %s: %w", writer, err)
	}
	return errors.Join(l.verifyIdentical(ctx, writer, ReplicaHost), l.verifyAckedOn(ctx, acked, ReplicaHost))
}
