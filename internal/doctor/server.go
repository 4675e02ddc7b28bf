package doctor

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vipguard/vipguard/internal/probe"
)

// Server is what doctor read of one server.
type Server struct {
	// Node is "local" or "peer"; Target says where, without credentials.
	Node, Target string
	// Err: the server could not be read at all.
	Err     error
	Version probe.Version
	// User is CURRENT_USER(), the account the grants belong to.
	User string
	// Vars are global variables by lower-case name.
	Vars map[string]string
	// ReadOnlyOrigin says where the current read_only came from (MariaDB
	// GLOBAL_VALUE_ORIGIN, MySQL VARIABLE_SOURCE); "" unknown.
	ReadOnlyOrigin string
	// StartOptions are mysqld's options at start (its command line and,
	// unless --no-defaults, what its option files say), nil when unknown
	// (only read for a server on this host).
	StartOptions []string
	// StartOptionsNote says why StartOptions is nil.
	StartOptionsNote string
	Replicas         []probe.Replica
	ReplicasErr      error
	Grants           []string
	GrantsErr        error
	// Privileges is SHOW PRIVILEGES, nil when it could not be read.
	Privileges []Privilege
	// Clock is the server's clock minus ours, and its uncertainty (half
	// the round trip).
	Clock, ClockUncertainty time.Duration
	ClockErr                error
}

// variables doctor reads (both families; a name a server lacks is absent).
var variables = []string{"server_id", "gtid_domain_id", "log_bin", "log_slave_updates", "log_replica_updates",
	"binlog_format", "read_only", "super_read_only", "auto_increment_increment", "auto_increment_offset",
	"sync_binlog", "innodb_flush_log_at_trx_commit", "gtid_mode", "enforce_gtid_consistency",
	"rpl_semi_sync_master_enabled", "rpl_semi_sync_slave_enabled",
	"rpl_semi_sync_source_enabled", "rpl_semi_sync_replica_enabled", "pid_file"}

// readOnlyOriginQuery asks where read_only's value came from; "" where
// the server cannot say.
func readOnlyOriginQuery(v probe.Version) string {
	switch {
	case v.Flavor == probe.MariaDB && v.AtLeast(10, 1, 0):
		return "SELECT GLOBAL_VALUE_ORIGIN FROM information_schema.SYSTEM_VARIABLES WHERE VARIABLE_NAME = 'READ_ONLY'"
	case v.Flavor == probe.MySQL && v.AtLeast(8, 0, 0):
		return "SELECT VARIABLE_SOURCE FROM performance_schema.variables_info WHERE VARIABLE_NAME = 'read_only'"
	}
	return ""
}

// queryTimeout bounds each of doctor's statements: it is run by a person,
// not by keepalived, and may meet a loaded server.
const queryTimeout = 3 * time.Second

// ReadServer reads one server through t. local says the server runs on
// this host (its start options are read then).
func ReadServer(ctx context.Context, node string, t probe.Target, local bool) *Server {
	s := &Server{Node: node, Target: t.String(), Vars: map[string]string{}}
	if t.QueryTimeout < queryTimeout {
		t.QueryTimeout = queryTimeout
	}
	if t.ConnectTimeout < time.Second {
		t.ConnectTimeout = time.Second
	}
	db, err := probe.Open(t)
	if err != nil {
		s.Err = err
		return s
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		s.Err = err
		return s
	}
	defer conn.Close()
	p := &probe.Prober{Q: conn, QueryTimeout: t.QueryTimeout}
	if s.Version, _, err = p.Version(ctx); err != nil {
		s.Err = err
		return s
	}
	if err := s.readVars(ctx, conn); err != nil {
		s.Err = err
		return s
	}
	s.Replicas, s.ReplicasErr = p.Replicas(ctx, s.Version)
	s.readGrants(ctx, conn)
	s.readPrivileges(ctx, conn)
	s.readClock(ctx, conn)
	if q := readOnlyOriginQuery(s.Version); q != "" {
		var origin string
		if row(ctx, conn, q, &origin) == nil {
			s.ReadOnlyOrigin = strings.ToUpper(origin)
		}
	}
	if local {
		s.StartOptions, s.StartOptionsNote = startOptions(ctx, s.Vars["pid_file"])
	} else {
		s.StartOptionsNote = "not on this host"
	}
	return s
}

func row(ctx context.Context, conn *sql.Conn, q string, dst ...any) error {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	return conn.QueryRowContext(qctx, q).Scan(dst...)
}

func (s *Server) readVars(ctx context.Context, conn *sql.Conn) error {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	q := "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('" + strings.Join(variables, "','") + "')"
	rows, err := conn.QueryContext(qctx, q)
	if err != nil {
		return fmt.Errorf("reading server variables: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		s.Vars[strings.ToLower(k)] = v
	}
	return rows.Err()
}

func (s *Server) readGrants(ctx context.Context, conn *sql.Conn) {
	if err := row(ctx, conn, "SELECT CURRENT_USER()", &s.User); err != nil {
		s.GrantsErr = err
		return
	}
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := conn.QueryContext(qctx, "SHOW GRANTS")
	if err != nil {
		s.GrantsErr = err
		return
	}
	defer rows.Close()
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			s.GrantsErr = err
			return
		}
		s.Grants = append(s.Grants, g)
	}
	s.GrantsErr = rows.Err()
}

// readPrivileges reads what this server can grant. Without it the
// grants check still works, with a coarser fix.
func (s *Server) readPrivileges(ctx context.Context, conn *sql.Conn) {
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := conn.QueryContext(qctx, "SHOW PRIVILEGES")
	if err != nil {
		return
	}
	defer rows.Close()
	var ps []Privilege
	for rows.Next() {
		var name, context, comment sql.NullString
		if rows.Scan(&name, &context, &comment) != nil {
			return
		}
		ps = append(ps, Privilege{Name: name.String, Context: context.String})
	}
	if rows.Err() == nil {
		s.Privileges = ps
	}
}

// readClock compares the server's clock with ours, taking our reading in
// the middle of the round trip.
func (s *Server) readClock(ctx context.Context, conn *sql.Conn) {
	var ts string
	t0 := time.Now()
	if err := row(ctx, conn, "SELECT UNIX_TIMESTAMP(NOW(6))", &ts); err != nil {
		s.ClockErr = err
		return
	}
	t1 := time.Now()
	f, err := strconv.ParseFloat(ts, 64)
	if err != nil {
		s.ClockErr = fmt.Errorf("server time %q: %w", ts, err)
		return
	}
	mid := t0.Add(t1.Sub(t0) / 2)
	server := time.Unix(0, int64(f*1e9))
	s.Clock, s.ClockUncertainty = server.Sub(mid), t1.Sub(t0)/2
}

// startOptions are mysqld's options at start: its command line (found by
// its pid file) and, unless that says --no-defaults, what
// my_print_defaults reads from the option files it names.
func startOptions(ctx context.Context, pidFile string) ([]string, string) {
	if pidFile == "" {
		return nil, "the server names no pid_file"
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil, fmt.Sprintf("cannot read the pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Sprintf("pid file %q holds no pid", pidFile)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Sprintf("cannot read mysqld's command line: %v", err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if len(args) > 0 {
		args = args[1:]
	}
	files := fileOptionsArgs(args)
	if files == nil {
		return args, ""
	}
	tool, err := exec.LookPath("my_print_defaults")
	if err != nil {
		if tool, err = exec.LookPath("mariadb-print-defaults"); err != nil {
			return nil, "my_print_defaults not found: cannot read the option files"
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, tool, append(files, "mysqld", "server", "mariadbd", "mariadb")...)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Sprintf("my_print_defaults: %v", err)
	}
	var opts []string
	for _, l := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		if len(l) > 0 {
			opts = append(opts, string(l))
		}
	}
	// Option files first: the command line overrides them.
	return append(opts, args...), ""
}

// fileOptionsArgs returns my_print_defaults' file arguments for a mysqld
// command line: nil for --no-defaults, else its --defaults-file and
// --defaults-extra-file.
func fileOptionsArgs(args []string) []string {
	out := []string{}
	for _, a := range args {
		switch {
		case a == "--no-defaults":
			return nil
		case strings.HasPrefix(a, "--defaults-file="), strings.HasPrefix(a, "--defaults-extra-file="):
			out = append(out, a)
		}
	}
	return out
}

// optionValue is the value options give a boolean server option (the
// last mention wins; "--read-only", "--read_only=1", "--skip-read-only",
// "read_only = ON" as my_print_defaults prints it all count). found is
// false when no option names it.
func optionValue(opts []string, name string) (value, found bool) {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "-") }
	want := norm(name)
	for _, o := range opts {
		o = strings.TrimPrefix(strings.TrimSpace(o), "--")
		k, v, hasV := strings.Cut(o, "=")
		k = norm(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		switch {
		case k == want:
			value, found = !hasV || truthy(v), true
		case k == "skip-"+want:
			value, found = false, true
		case k == "enable-"+want:
			value, found = true, true
		case k == "disable-"+want:
			value, found = false, true
		}
	}
	return value, found
}
