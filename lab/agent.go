package lab

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// What the lab needs around agentcheck and HAProxy's view of the servers.

// AgentMaint turns the node's maintenance flag on or off with agentcheck's
// own switch (the same flag as mysqlcheck maint), as an operator would.
func (l *Lab) AgentMaint(ctx context.Context, name string, on bool, reason string) error {
	n := l.Nodes[name]
	args := []string{"maint", "off"}
	if on {
		args = []string{"maint", "on", "--reason", reason}
	}
	argv := append(append(l.Net.Wrap(name), filepath.Join(l.Bin, "agentcheck"), "-c", n.Config), args...)
	if out, err := run(ctx, argv...); err != nil {
		return fmt.Errorf("agentcheck %v on %s: %w: %s", args, name, err, out)
	}
	return nil
}

// WaitHAProxy waits until HAProxy's "show stat" line of key
// ("backend/server") satisfies ok, polling every 50 ms, and returns that
// line and how long it took.
func (l *Lab) WaitHAProxy(ctx context.Context, key string, ok func(ServerStat) bool, limit time.Duration) (ServerStat, time.Duration, error) {
	start := time.Now()
	var last ServerStat
	for time.Since(start) < limit {
		if st, err := l.HAProxyStat(); err == nil {
			last = st[key]
			if ok(last) {
				return last, time.Since(start), nil
			}
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return last, time.Since(start), err
		}
	}
	return last, time.Since(start), fmt.Errorf("haproxy %s not as wanted within %s: status %q weight %s agent %q",
		key, limit, last.Status, last.Weight, last.Agent)
}

// ProxySessions counts the client sessions user has open on a node
// through HAProxy (connections from the proxy's address), read from the
// node's processlist as root.
func (l *Lab) ProxySessions(ctx context.Context, name, user string) (int, error) {
	db, err := l.Nodes[name].DB.RootDB()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var n int
	err = db.QueryRowContext(qctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ? AND HOST LIKE ?",
		user, ProxyAddr+":%").Scan(&n)
	return n, err
}
