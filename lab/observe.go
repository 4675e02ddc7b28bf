package lab

import (
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vipguard/vipguard/internal/state"
	"github.com/vipguard/vipguard/internal/witness"
)

// Holder returns the node holding the VIP: "db1", "db2", "" for none, or
// "both" (a split brain).
func (l *Lab) Holder(ctx context.Context) (string, error) {
	var got []string
	for _, name := range []string{"db1", "db2"} {
		has, err := l.Net.HasAddr(ctx, name, VIP)
		if err != nil {
			return "", err
		}
		if has {
			got = append(got, name)
		}
	}
	switch len(got) {
	case 0:
		return "", nil
	case 1:
		return got[0], nil
	}
	return "both", nil
}

// WaitHolder waits until name, and only name, holds the VIP.
func (l *Lab) WaitHolder(ctx context.Context, name string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	h := ""
	for time.Now().Before(deadline) {
		var err error
		if h, err = l.Holder(ctx); err == nil && h == name {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("VIP not on %s within %s (holder %q; keepalived %s=%s %s=%s)", name, limit, h,
		"db1", l.KeepalivedState("db1"), "db2", l.KeepalivedState("db2"))
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ReadOnly reads @@read_only on a node as root over the socket, within
// limit. An error means the node did not answer (down or frozen).
func (l *Lab) ReadOnly(ctx context.Context, name string, limit time.Duration) (bool, error) {
	db, err := l.Nodes[name].DB.RootDB()
	if err != nil {
		return false, err
	}
	defer db.Close()
	return readOnly(ctx, db, limit)
}

func readOnly(ctx context.Context, db *sql.DB, limit time.Duration) (bool, error) {
	qctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var ro int
	if err := db.QueryRowContext(qctx, "SELECT @@read_only").Scan(&ro); err != nil {
		return false, err
	}
	return ro != 0, nil
}

// CheckResult is one run of mysqlcheck on a node.
type CheckResult struct {
	Exit int
	Line string
	Took time.Duration
}

// Fit reports exit status 0.
func (c CheckResult) Fit() bool { return c.Exit == 0 }

func (c CheckResult) String() string {
	return fmt.Sprintf("exit %d: %s", c.Exit, c.Line)
}

// Mysqlcheck runs the built mysqlcheck in the node's namespace with the
// node's config, exactly as keepalived does, plus extra args.
func (l *Lab) Mysqlcheck(ctx context.Context, name string, args ...string) CheckResult {
	n := l.Nodes[name]
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	argv := append(append(l.Net.Wrap(name), filepath.Join(l.Bin, "mysqlcheck"), "-c", n.Config), args...)
	start := time.Now()
	out, err := exec.CommandContext(cctx, argv[0], argv[1:]...).CombinedOutput()
	r := CheckResult{Line: strings.TrimSpace(string(out)), Took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Exit = ee.ExitCode()
	default:
		r.Exit, r.Line = -1, err.Error()
	}
	return r
}

// HAProxyServers returns "backend/server" → status (UP, DOWN, DRAIN, ...)
// from HAProxy's stats socket.
func (l *Lab) HAProxyServers() (map[string]string, error) {
	st, err := l.HAProxyStat()
	if err != nil {
		return nil, err
	}
	res := map[string]string{}
	for k, v := range st {
		res[k] = v.Status
	}
	return res, nil
}

// IsDown reports whether an HAProxy server status is down: "DOWN", "DOWN
// (agent)" (the agent said down), "DOWN 1/2" (down, rising).
func IsDown(status string) bool { return strings.HasPrefix(status, "DOWN") }

// ServerStat is one server's line of HAProxy's "show stat".
type ServerStat struct {
	Status string // UP, DOWN, DRAIN, MAINT, "UP 1/2", ...
	Weight string // effective weight
	// Agent is the agent-check's last result and description as HAProxy
	// reports them ("L7OK up 100% #reader: ...").
	Agent string
	// Sessions is the number of current sessions (scur).
	Sessions string
}

// HAProxyStat returns "backend/server" → its line of "show stat".
func (l *Lab) HAProxyStat() (map[string]ServerStat, error) {
	out, err := l.HAProxyCommand("show stat")
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil || len(recs) == 0 {
		return nil, fmt.Errorf("parsing show stat: %v", err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return rec[i]
		}
		return ""
	}
	res := map[string]ServerStat{}
	for _, rec := range recs[1:] {
		if len(rec) <= col["status"] {
			continue
		}
		sv := rec[col["svname"]]
		if sv == "FRONTEND" || sv == "BACKEND" {
			continue
		}
		res[rec[col["pxname"]]+"/"+sv] = ServerStat{Status: get(rec, "status"), Weight: get(rec, "weight"),
			Agent: strings.TrimSpace(get(rec, "agent_status") + " " + get(rec, "agent_desc")), Sessions: get(rec, "scur")}
	}
	return res, nil
}

// HAProxyView is HAProxy's view of the servers in one short line, for the
// demo timeline and diagnostics: "W db1=UP db2=DOWN  R db1=UP/100 db2=UP/100"
// (and db3=UP/100 with the read replica).
func (l *Lab) HAProxyView() string {
	st, err := l.HAProxyStat()
	if err != nil {
		return "haproxy: " + err.Error()
	}
	v := func(k string, weight bool) string {
		s, ok := st[k]
		if !ok {
			return "?"
		}
		out := strings.ReplaceAll(s.Status, " ", "")
		if weight {
			out += "/" + s.Weight
		}
		return out
	}
	view := fmt.Sprintf("W db1=%s db2=%s  R db1=%s db2=%s", v("mysql_writer/db1", false), v("mysql_writer/db2", false),
		v("mysql_reader/db1", true), v("mysql_reader/db2", true))
	if _, ok := st["mysql_reader/"+ReplicaHost]; ok {
		view += " " + ReplicaHost + "=" + v("mysql_reader/"+ReplicaHost, true)
	}
	return view
}

// AgentAnswer asks agentcheck on a node one agent-check question (role:
// "writer", "reader", "health", ...) from the proxy's namespace, as
// HAProxy does, and returns the reply line.
func (l *Lab) AgentAnswer(ctx context.Context, name, role string) (string, error) {
	// bash's /dev/tcp: the test process lives outside the lab's network.
	const script = `exec 3<>"/dev/tcp/$1/$2" && printf '%s\n' "$3" >&3 && IFS= read -r line <&3 && printf '%s\n' "$line"`
	actx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	argv := append(l.Net.Wrap("proxy"), "bash", "-c", script, "agent", hostAddr[name], fmt.Sprint(AgentPort), role)
	out, err := exec.CommandContext(actx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("agentcheck on %s (%s): %w: %s", name, role, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// HAProxyCommand sends one command to HAProxy's stats socket.
func (l *Lab) HAProxyCommand(cmd string) (string, error) {
	c, err := net.DialTimeout("unix", l.Proxy.StatsSock, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(c, 1<<20))
	return string(b), err
}

// ReplicationStatus reads SHOW SLAVE STATUS on a node as root.
func (l *Lab) ReplicationStatus(ctx context.Context, name string) (map[string]string, error) {
	db, err := l.Nodes[name].DB.RootDB()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	rows, err := db.QueryContext(qctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, fmt.Errorf("%s: SHOW SLAVE STATUS: %w", name, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, fmt.Errorf("%s: no replication configured", name)
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	m := map[string]string{}
	for i, c := range cols {
		m[c] = vals[i].String
	}
	return m, rows.Err()
}

// replicationHealthy says what is wrong with a node's replication, nil
// when both threads run and no error is recorded.
func (l *Lab) replicationHealthy(ctx context.Context, name string) error {
	st, err := l.ReplicationStatus(ctx, name)
	if err != nil {
		return err
	}
	if st["Slave_IO_Running"] != "Yes" || st["Slave_SQL_Running"] != "Yes" {
		return fmt.Errorf("%s: replication IO=%s SQL=%s (IO error %s %q, SQL error %s %q)", name,
			st["Slave_IO_Running"], st["Slave_SQL_Running"], st["Last_IO_Errno"], st["Last_IO_Error"],
			st["Last_SQL_Errno"], st["Last_SQL_Error"])
	}
	if st["Last_SQL_Errno"] != "0" {
		return fmt.Errorf("%s: replication SQL error %s: %s", name, st["Last_SQL_Errno"], st["Last_SQL_Error"])
	}
	if st["Last_IO_Errno"] != "0" {
		return fmt.Errorf("%s: replication IO error %s: %s", name, st["Last_IO_Errno"], st["Last_IO_Error"])
	}
	return nil
}

// Status is one snapshot of the lab for the stability wait and the demo.
type Status struct {
	Holder     string
	ReadOnly   map[string]string // "ON", "OFF", "?" (no answer)
	Keepalived map[string]string
	Check      map[string]CheckResult
}

// Snapshot reads everything a person would want to see, concurrently.
func (l *Lab) Snapshot(ctx context.Context) Status {
	st := Status{ReadOnly: map[string]string{}, Keepalived: map[string]string{}, Check: map[string]CheckResult{}}
	type res struct {
		name string
		ro   string
		chk  CheckResult
	}
	ch := make(chan res, 2)
	for _, name := range []string{"db1", "db2"} {
		go func() {
			r := res{name: name, ro: "?"}
			if ro, err := l.ReadOnly(ctx, name, 500*time.Millisecond); err == nil {
				r.ro = map[bool]string{true: "ON", false: "OFF"}[ro]
			}
			r.chk = l.Mysqlcheck(ctx, name)
			ch <- r
		}()
	}
	st.Holder, _ = l.Holder(ctx)
	for range 2 {
		r := <-ch
		st.ReadOnly[r.name], st.Check[r.name] = r.ro, r.chk
		st.Keepalived[r.name] = l.KeepalivedState(r.name)
	}
	return st
}

// stableProblem says why the lab is not in its clean state, "" when it is:
// exactly one node holds the VIP and is MASTER and writable, the other is
// BACKUP and read-only, notify's outcome on each is its last transition
// done, both are fit and replicate without error, and
// HAProxy (through agentcheck) has the holder UP and the other DOWN as
// writer, and both UP as readers.
func (l *Lab) stableProblem(ctx context.Context) string {
	st := l.Snapshot(ctx)
	h := st.Holder
	if h != "db1" && h != "db2" {
		return fmt.Sprintf("VIP holder is %q", h)
	}
	o := l.Nodes[h].Peer
	switch {
	case st.Keepalived[h] != "MASTER" || st.Keepalived[o] != "BACKUP":
		return fmt.Sprintf("keepalived %s=%s %s=%s", h, st.Keepalived[h], o, st.Keepalived[o])
	case st.ReadOnly[h] != "OFF" || st.ReadOnly[o] != "ON":
		return fmt.Sprintf("read_only %s=%s %s=%s", h, st.ReadOnly[h], o, st.ReadOnly[o])
	case !st.Check[h].Fit():
		return fmt.Sprintf("mysqlcheck on %s: %s", h, st.Check[h])
	case !st.Check[o].Fit():
		return fmt.Sprintf("mysqlcheck on %s: %s", o, st.Check[o])
	}
	// notify (or the stand-in) has finished the transition keepalived
	// last made on each node: a fence still running would, for one, restart
	// replication under a scenario that has just stopped it.
	for name, want := range map[string][2]string{h: {"MASTER", "writer"}, o: {"BACKUP", "standby"}} {
		out, err := state.Dir(l.Nodes[name].StateDir).Outcome()
		if err != nil || out == nil || out.Event != want[0] || out.Phase != state.PhaseDone || string(out.Role) != want[1] {
			got := "none"
			if out != nil {
				got = fmt.Sprintf("%s %s role %s", out.Event, out.Phase, out.Role)
			}
			return fmt.Sprintf("notify's outcome on %s: %s (%v), want %s done role %s", name, got, err, want[0], want[1])
		}
	}
	for _, name := range []string{"db1", "db2"} {
		if err := l.replicationHealthy(ctx, name); err != nil {
			return err.Error()
		}
		// With the shipped config the proxy is the witness once
		// agentcheck has learned it from HAProxy's agent-checks.
		learned, err := witness.Load(state.Dir(l.Nodes[name].StateDir), witness.DefaultRules)
		if err != nil || !slices.Contains(learned, netip.MustParseAddr(ProxyAddr)) {
			return fmt.Sprintf("%s has not learned the proxy %s as its witness (%v %v)", name, ProxyAddr, learned, err)
		}
	}
	if l.haprox != nil {
		sv, err := l.HAProxyStat()
		if err != nil {
			return "haproxy: " + err.Error()
		}
		if sv["mysql_writer/"+h].Status != "UP" || !IsDown(sv["mysql_writer/"+o].Status) ||
			sv["mysql_reader/db1"].Status != "UP" || sv["mysql_reader/db2"].Status != "UP" {
			return "haproxy servers " + l.HAProxyView()
		}
	}
	return ""
}

// WaitStable waits for the clean state (see stableProblem).
func (l *Lab) WaitStable(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	problem := ""
	for time.Now().Before(deadline) {
		if problem = l.stableProblem(ctx); problem == "" {
			return nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("lab not stable within %s: %s", limit, problem)
}

// stateOutcome describes a node's last notify transition, "none" before
// the first.
func (l *Lab) stateOutcome(name string) (string, error) {
	o, err := state.Dir(l.Nodes[name].StateDir).Outcome()
	if err != nil || o == nil {
		return "none", err
	}
	return fmt.Sprintf("%s %s %s at %s", o.Event, o.Phase, o.Role, o.At.Format(time.RFC3339Nano)), nil
}
