// Package mariadbtest starts throwaway MariaDB servers for tests, the lab and
// the demo: each gets its own datadir in a temp dir, is started with
// --no-defaults on a free port and socket, and is removed again when the test
// ends (also when it fails). Pair wires two of them into the two-way GTID
// replication vipguard guards.
//
// Servers run as the invoking user; as root, root@localhost logs in over the
// socket with unix_socket authentication, as on a Debian host.
package mariadbtest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Test credentials created in every server.
const (
	ReplUser     = "repl"
	ReplPassword = "repl-pass"
	// AppUser is a plain client account (no SUPER, no READ_ONLY ADMIN):
	// what an application has, so read_only stops it.
	AppUser     = "app"
	AppPassword = "app-pass"
	// CheckUser is the least-privileged account vipguard needs (see the
	// README's required grants).
	CheckUser     = "vipguard"
	CheckPassword = "vipguard-pass"
	Database      = "vgtest"
)

// Options describe one server.
type Options struct {
	// ServerID and DomainID must differ between the servers of a pair.
	ServerID, DomainID uint32
	// BindAddress defaults to 127.0.0.1.
	BindAddress string
	// Host is the address others use to reach the server (replication, TCP
	// clients). Default: BindAddress. Set it when binding to 0.0.0.0.
	Host string
	// Port 0 picks a free one (on BindAddress as seen from here).
	Port int
	// ReadOnly starts the server with read_only=ON, as every node must.
	ReadOnly bool
	// Wrap prefixes the mariadbd command, e.g. {"ip", "netns", "exec", "ns1"}.
	Wrap []string
	// Dir is the parent for the datadir; default a new temp dir.
	Dir string
	// Args are extra mariadbd options.
	Args []string
}

// Server is one running mariadbd.
type Server struct {
	Opts   Options
	Dir    string // datadir
	Socket string
	Host   string
	Port   int
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // exit status once done is closed
	ownDir string
}

// binary finds a program in PATH or in sbin dirs (root's PATH may lack them).
func binary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install mariadb-server (apt-get install mariadb-server)", name)
}

// Available reports whether a server can be started here, and why not.
func Available() error {
	for _, b := range []string{"mariadbd", "mariadb-install-db"} {
		if _, err := binary(b); err != nil {
			return err
		}
	}
	return nil
}

// FreePort returns a TCP port free on addr right now. It picks at random
// below the kernel's ephemeral range (32768+): ports from bind(":0") are
// handed out again to the next caller in another test process, and outgoing
// connections take ephemeral ports between our check and mariadbd's bind.
func FreePort(addr string) (int, error) {
	for range 64 {
		p := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(p)))
		if err == nil {
			l.Close()
			return p, nil
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pickPort is FreePort, replaceable by the test of the retry.
var pickPort = FreePort

// errPortInUse marks a start that failed only because the port was taken.
var errPortInUse = errors.New("port already in use")

// Launch creates a datadir and starts a server, waiting until it answers.
func Launch(ctx context.Context, o Options) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if o.ServerID == 0 {
		o.ServerID = 1
	}
	if o.DomainID == 0 {
		o.DomainID = o.ServerID
	}
	if o.BindAddress == "" {
		o.BindAddress = "127.0.0.1"
	}
	if o.Host == "" {
		o.Host = o.BindAddress
	}
	s := &Server{Opts: o, Host: o.Host, done: make(chan struct{})}
	parent := o.Dir
	if parent == "" {
		// Short path: unix socket paths are limited to 107 bytes.
		d, err := os.MkdirTemp("", "vgdb")
		if err != nil {
			return nil, err
		}
		parent, s.ownDir = d, d
	}
	s.Dir = filepath.Join(parent, fmt.Sprintf("db%d", o.ServerID))
	s.Socket = filepath.Join(s.Dir, "mysqld.sock")
	autoPort := o.Port == 0
	if autoPort {
		p, err := pickPort(o.Host)
		if err != nil {
			s.cleanupDir()
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		o.Port = p
		s.Opts.Port = p
	}
	s.Port = o.Port
	if err := s.install(ctx); err != nil {
		s.cleanupDir()
		return nil, err
	}
	// A port picked by FreePort can still be taken by a parallel test
	// before mariadbd binds it: pick another and start again.
	for attempt := 1; ; attempt++ {
		err := s.Start(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, errPortInUse) || !autoPort || attempt == 5 {
			s.cleanupDir()
			return nil, err
		}
		p, perr := pickPort(o.Host)
		if perr != nil {
			s.cleanupDir()
			return nil, fmt.Errorf("finding a free port: %w", perr)
		}
		o.Port, s.Opts.Port, s.Port = p, p, p
	}
	if err := s.bootstrapAccounts(ctx); err != nil {
		s.Destroy()
		return nil, err
	}
	return s, nil
}

func (s *Server) install(ctx context.Context) error {
	bin, _ := binary("mariadb-install-db")
	args := []string{"--no-defaults", "--datadir=" + filepath.Join(s.Dir, "data"),
		"--auth-root-authentication-method=socket", "--skip-test-db",
		// A starting mariadbd deletes #sql* files in its tmpdir: servers
		// sharing /tmp break each other's bootstrap.
		"--tmpdir=" + s.tmpDir()}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	if err := os.MkdirAll(s.tmpDir(), 0o755); err != nil {
		return err
	}
	ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ictx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mariadb-install-db: %w\n%s", err, tail(out, 20))
	}
	return nil
}

func (s *Server) tmpDir() string { return filepath.Join(s.Dir, "tmp") }

// Args returns the mariadbd command line for this server.
func (s *Server) Args() []string {
	o := s.Opts
	args := []string{"--no-defaults",
		"--datadir=" + filepath.Join(s.Dir, "data"),
		"--socket=" + s.Socket,
		"--pid-file=" + filepath.Join(s.Dir, "mysqld.pid"),
		"--tmpdir=" + s.tmpDir(),
		"--log-error=" + filepath.Join(s.Dir, "error.log"),
		"--bind-address=" + o.BindAddress,
		"--port=" + strconv.Itoa(o.Port),
		"--server-id=" + strconv.FormatUint(uint64(o.ServerID), 10),
		"--gtid-domain-id=" + strconv.FormatUint(uint64(o.DomainID), 10),
		"--log-bin=" + filepath.Join(s.Dir, "data", "binlog"),
		"--relay-log=" + filepath.Join(s.Dir, "data", "relay"),
		"--log-slave-updates", "--binlog-format=ROW",
		"--skip-name-resolve", "--performance-schema=OFF",
		"--innodb-buffer-pool-size=32M", "--max-connections=300",
		"--slave-net-timeout=4", "--lock-wait-timeout=30",
		"--auto-increment-increment=2",
		"--auto-increment-offset=" + strconv.FormatUint(uint64(o.ServerID%2+1), 10),
	}
	if o.ReadOnly {
		args = append(args, "--read-only=ON")
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	return append(args, o.Args...)
}

// Start runs mariadbd on the existing datadir (again, after Stop or Kill)
// and waits until it answers.
func (s *Server) Start(ctx context.Context) error {
	bin, err := binary("mariadbd")
	if err != nil {
		return err
	}
	logPath := filepath.Join(s.Dir, "error.log")
	var logStart int64
	if fi, err := os.Stat(logPath); err == nil {
		logStart = fi.Size()
	}
	argv := append(append(append([]string{}, s.Opts.Wrap...), bin), s.Args()...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting mariadbd: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	done := s.done
	go func() { s.err = cmd.Wait(); close(done) }()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if err := s.ping(wctx); err == nil {
			return nil
		}
		select {
		case <-done:
			log := s.ErrorLog(30)
			if b, err := os.ReadFile(logPath); err == nil && int64(len(b)) >= logStart &&
				bytes.Contains(b[logStart:], []byte("Bind on TCP/IP port")) {
				return fmt.Errorf("mariadbd exited at start: %w (%d):\n%s", errPortInUse, s.Port, log)
			}
			return fmt.Errorf("mariadbd exited at start (%v):\n%s", s.err, log)
		case <-wctx.Done():
			s.Kill()
			return fmt.Errorf("mariadbd did not answer within 60s:\n%s", s.ErrorLog(30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) ping(ctx context.Context) error {
	db, err := s.RootDB()
	if err != nil {
		return err
	}
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return db.PingContext(pctx)
}

// ErrorLog returns the last n lines of the server's error log.
func (s *Server) ErrorLog(n int) string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "error.log"))
	return tail(b, n)
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// DSNConfig returns a driver config for user over the socket (root) or TCP.
func (s *Server) DSNConfig(user, password string) *mysql.Config {
	c := mysql.NewConfig()
	c.User, c.Passwd = user, password
	if user == "root" {
		c.Net, c.Addr = "unix", s.Socket
	} else {
		c.Net, c.Addr = "tcp", net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	}
	c.Timeout = 5 * time.Second
	c.ReadTimeout = 30 * time.Second
	c.WriteTimeout = 30 * time.Second
	return c
}

// RootDB opens a pool as root over the socket.
func (s *Server) RootDB() (*sql.DB, error) { return s.DB("root", "") }

// DB opens a pool as user (root over the socket, others over TCP).
func (s *Server) DB(user, password string) (*sql.DB, error) {
	return sql.Open("mysql", s.DSNConfig(user, password).FormatDSN())
}

// Exec runs statements as root, each under a 30 s deadline.
func (s *Server) Exec(ctx context.Context, stmts ...string) error {
	db, err := s.RootDB()
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range stmts {
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := db.ExecContext(qctx, q)
		cancel()
		if err != nil {
			return fmt.Errorf("server %d: %q: %w", s.Opts.ServerID, q, err)
		}
	}
	return nil
}

// bootstrapAccounts creates the test accounts and database. It runs with
// binary logging off for the session so the pair's GTID histories start
// clean (each server creates its own identical accounts).
func (s *Server) bootstrapAccounts(ctx context.Context) error {
	return s.Exec(ctx,
		"SET SESSION sql_log_bin=0",
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", ReplUser, ReplPassword),
		fmt.Sprintf("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '%s'@'%%'", ReplUser),
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", AppUser, AppPassword),
		fmt.Sprintf("CREATE DATABASE %s", Database),
		fmt.Sprintf("GRANT ALL ON %s.* TO '%s'@'%%'", Database, AppUser),
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", CheckUser, CheckPassword),
		fmt.Sprintf("CREATE USER '%s'@'localhost' IDENTIFIED BY '%s'", CheckUser, CheckPassword),
		fmt.Sprintf("GRANT %s ON *.* TO '%s'@'%%'", CheckGrants, CheckUser),
		fmt.Sprintf("GRANT %s ON *.* TO '%s'@'localhost'", CheckGrants, CheckUser),
		"RESET MASTER",
	)
}

// CheckGrants are the privileges the README asks for (MariaDB 10.11 names).
const CheckGrants = "PROCESS, REPLICATION CLIENT, SLAVE MONITOR, BINLOG MONITOR, SELECT"

// ReplicateFrom points this server at src (GTID, current_pos) and starts
// replication, waiting until both threads run.
func (s *Server) ReplicateFrom(ctx context.Context, src *Server) error {
	host := src.Host
	err := s.Exec(ctx,
		fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', "+
			"MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
			host, src.Port, ReplUser, ReplPassword),
		"START SLAVE")
	if err != nil {
		return err
	}
	return s.WaitReplicating(ctx, 20*time.Second)
}

// WaitReplicating waits until the IO and SQL threads both run.
func (s *Server) WaitReplicating(ctx context.Context, limit time.Duration) error {
	db, err := s.RootDB()
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(limit)
	var io, sqlT, lastErr string
	for time.Now().Before(deadline) {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		row := map[string]string{}
		err := scanOne(qctx, db, "SHOW SLAVE STATUS", row)
		cancel()
		if err == nil {
			io, sqlT = row["Slave_IO_Running"], row["Slave_SQL_Running"]
			lastErr = row["Last_IO_Error"] + row["Last_SQL_Error"]
			if io == "Yes" && sqlT == "Yes" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("server %d: replication not running after %s (IO=%q SQL=%q %s)", s.Opts.ServerID, limit, io, sqlT, lastErr)
}

// SyncWith waits until this server has applied everything src has in its
// binlog: per GTID domain, this server's gtid_binlog_pos (log_slave_updates)
// reaches src's. MASTER_GTID_WAIT is no use here: it only looks at
// gtid_slave_pos, which never holds a node's own writes coming back.
func (s *Server) SyncWith(ctx context.Context, src *Server, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		want, err := src.Query(ctx, "SELECT @@gtid_binlog_pos")
		if err != nil {
			return err
		}
		have, err := s.Query(ctx, "SELECT @@gtid_binlog_pos")
		if err != nil {
			return err
		}
		if gtidCovers(have, want) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server %d did not reach %q within %s (at %q)", s.Opts.ServerID, want, limit, have)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// gtidCovers reports whether MariaDB GTID list have is at or past want in
// every domain of want.
func gtidCovers(have, want string) bool {
	seqs := func(list string) map[string]uint64 {
		m := map[string]uint64{}
		for _, g := range strings.Split(list, ",") {
			parts := strings.Split(strings.TrimSpace(g), "-")
			if len(parts) != 3 {
				continue
			}
			n, _ := strconv.ParseUint(parts[2], 10, 64)
			m[parts[0]] = n
		}
		return m
	}
	h := seqs(have)
	for dom, n := range seqs(want) {
		if h[dom] < n {
			return false
		}
	}
	return true
}

func scanOne(ctx context.Context, db *sql.DB, q string, into map[string]string) error {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return err
	}
	for i, c := range cols {
		into[c] = vals[i].String
	}
	return nil
}

// Pid returns the server's process id (0 when not running).
func (s *Server) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil || s.Exited() {
		return 0
	}
	return s.cmd.Process.Pid
}

// Exited reports whether the process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Server) signal(sig syscall.Signal) error {
	if s.cmd == nil || s.cmd.Process == nil {
		return errors.New("server not started")
	}
	return s.cmd.Process.Signal(sig)
}

// Freeze stops the server with SIGSTOP: it keeps its sockets but answers
// nothing, the failure a naive check hangs on.
func (s *Server) Freeze() error { return s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server.
func (s *Server) Thaw() error { return s.signal(syscall.SIGCONT) }

// Kill ends the server with SIGKILL (a crash) and waits for it.
func (s *Server) Kill() {
	if s.cmd == nil || s.Exited() {
		return
	}
	_ = s.signal(syscall.SIGCONT)
	_ = s.signal(syscall.SIGKILL)
	<-s.done
}

// Stop shuts the server down cleanly (SIGTERM), killing it after 30 s.
func (s *Server) Stop() {
	if s.cmd == nil || s.Exited() {
		return
	}
	_ = s.signal(syscall.SIGCONT)
	_ = s.signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.Kill()
	}
}

// Destroy kills the server and removes its files.
func (s *Server) Destroy() {
	s.Kill()
	s.cleanupDir()
}

func (s *Server) cleanupDir() {
	if s.ownDir != "" {
		os.RemoveAll(s.ownDir)
	} else if s.Dir != "" {
		os.RemoveAll(s.Dir)
	}
}

// PairOptions tune NewPair.
type PairOptions struct {
	// A and B override the options of each server; ServerID 1 and 2 and
	// read_only=ON are the defaults.
	A, B Options
}

// NewPair starts two servers replicating both ways (GTID, distinct
// server_id and gtid_domain_id, log_slave_updates), as vipguard runs them.
// Both start read-only; the caller opens writes on the one it makes writer.
func NewPair(ctx context.Context, po PairOptions) (a, b *Server, err error) {
	oa, ob := po.A, po.B
	if oa.ServerID == 0 {
		oa.ServerID = 1
	}
	if ob.ServerID == 0 {
		ob.ServerID = 2
	}
	oa.ReadOnly, ob.ReadOnly = true, true
	type res struct {
		s   *Server
		err error
	}
	ch := make(chan res, 2)
	for _, o := range []Options{oa, ob} {
		go func(o Options) { s, err := Launch(ctx, o); ch <- res{s, err} }(o)
	}
	var got []*Server
	for range 2 {
		r := <-ch
		if r.err != nil {
			err = errors.Join(err, r.err)
			continue
		}
		got = append(got, r.s)
	}
	if err != nil {
		for _, s := range got {
			s.Destroy()
		}
		return nil, nil, err
	}
	a, b = got[0], got[1]
	if a.Opts.ServerID != oa.ServerID {
		a, b = b, a
	}
	if err = a.ReplicateFrom(ctx, b); err == nil {
		err = b.ReplicateFrom(ctx, a)
	}
	if err != nil {
		a.Destroy()
		b.Destroy()
		return nil, nil, err
	}
	return a, b, nil
}

// Query returns the first column of the first row of q as a string.
func (s *Server) Query(ctx context.Context, q string, args ...any) (string, error) {
	db, err := s.RootDB()
	if err != nil {
		return "", err
	}
	defer db.Close()
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var v sql.NullString
	if err := db.QueryRowContext(qctx, q, args...).Scan(&v); err != nil {
		return "", fmt.Errorf("server %d: %q: %w", s.Opts.ServerID, q, err)
	}
	return v.String, nil
}

// WriteOptionFile writes a [client] option file for user into dir with
// mode 0600 and returns its path.
func WriteOptionFile(dir string, s *Server, user, password string) (string, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# written by mariadbtest\n[client]\nuser = %s\npassword = \"%s\"\nhost = %s\nport = %d\n", user, password, s.Host, s.Port)
	p := filepath.Join(dir, fmt.Sprintf("client-%d.cnf", s.Opts.ServerID))
	return p, os.WriteFile(p, b.Bytes(), 0o600)
}
