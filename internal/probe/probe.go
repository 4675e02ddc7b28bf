// Package probe reads the state of one MySQL or MariaDB server: flavor and
// version, read_only, replication channels, own binlog and GTID position, and
// heartbeat lag. All three vipguard binaries read the server through it.
//
// Every call runs under a context deadline and the connection has dial, read
// and write timeouts, so a frozen server costs a bounded wait, never a hang.
// Dialect differences live in dialect.go.
package probe

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/vipguard/vipguard/internal/config"
)

// Target says where and how to connect.
type Target struct {
	Socket   string // used when Host is empty
	Host     string
	Port     int
	User     string
	Password string
	// ConnectTimeout bounds dial and handshake; QueryTimeout bounds each
	// statement (also enforced as socket read/write timeouts).
	ConnectTimeout, QueryTimeout time.Duration
}

// LocalTarget builds the Target of the local server from the configuration.
func LocalTarget(c *config.Config) Target {
	m := c.MySQL
	return Target{
		Socket: m.Socket, Host: m.Host, Port: m.Port,
		User: m.User, Password: m.Password,
		ConnectTimeout: m.ConnectTimeout.Duration, QueryTimeout: m.QueryTimeout.Duration,
	}
}

// PeerTarget builds the Target of the peer's server ([peer], with the
// local server's timeouts).
func PeerTarget(c *config.Config) Target {
	return Target{Host: c.Peer.Host, Port: c.Peer.Port, User: c.Peer.User, Password: c.Peer.Password,
		ConnectTimeout: c.MySQL.ConnectTimeout.Duration, QueryTimeout: c.MySQL.QueryTimeout.Duration}
}

// String describes the target without credentials.
func (t Target) String() string {
	if t.Host != "" {
		return t.User + "@" + net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	}
	return t.User + "@unix(" + t.Socket + ")"
}

// DSN builds the go-sql-driver DSN with all deadlines set.
func (t Target) DSN() string {
	c := mysql.NewConfig()
	c.User = t.User
	c.Passwd = t.Password
	if t.Host != "" {
		c.Net = "tcp"
		c.Addr = net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	} else {
		c.Net = "unix"
		c.Addr = t.Socket
	}
	c.Timeout = t.ConnectTimeout
	// Socket timeouts are a backstop behind the per-query context deadline:
	// they fire later so that a slow server is reported as a deadline
	// (context error), not as the driver's bare "invalid connection".
	c.ReadTimeout = 2 * t.QueryTimeout
	c.WriteTimeout = 2 * t.QueryTimeout
	c.AllowNativePasswords = true
	c.InterpolateParams = true // one round trip per query, no server-side prepare
	return c.FormatDSN()
}

// Open returns a small pool for t. The pool is capped: a check storm must
// never turn into a connection storm on the database.
func Open(t Target) (*sql.DB, error) {
	db, err := sql.Open("mysql", t.DSN())
	if err != nil {
		return nil, fmt.Errorf("bad connection settings for %s: %w", t, err)
	}
	db.SetMaxOpenConns(2)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(time.Minute)
	return db, nil
}

// Querier is what the probe needs from *sql.DB or *sql.Conn.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Prober reads server state through one Querier.
type Prober struct {
	Q            Querier
	QueryTimeout time.Duration
	// Heartbeat, when Table is set, adds heartbeat lag to snapshots.
	HeartbeatTable    string
	HeartbeatServerID uint32
	HeartbeatUTC      bool
	// Binlog adds the own binary log coordinates to snapshots.
	Binlog bool
	// WithSemiSync adds the semi-sync state to snapshots.
	WithSemiSync bool
}

// Snapshot is the state of a server at one moment.
type Snapshot struct {
	Version       Version
	ServerID      uint32
	ReadOnly      bool
	SuperReadOnly bool // MySQL only
	GTIDMode      string
	// MariaDB GTID positions (domain-server-seq lists).
	GTIDBinlogPos, GTIDCurrentPos, GTIDSlavePos string
	// MySQL @@gtid_executed.
	GTIDExecuted string
	Replicas     []Replica
	Binlog       *BinlogPos // nil unless asked for, or binary logging is off
	// SemiSync is nil unless asked for.
	SemiSync *SemiSync
	// HeartbeatLag is set when a heartbeat table is configured and the
	// source's row was found.
	HeartbeatLag *time.Duration
	Took         time.Duration
}

// Writable reports whether clients without special privileges can write.
func (s *Snapshot) Writable() bool { return !s.ReadOnly && !s.SuperReadOnly }

// BinlogPos is a position in a server's own binary log.
type BinlogPos struct {
	File string
	Pos  uint64
}

func (b BinlogPos) String() string { return b.File + ":" + strconv.FormatUint(b.Pos, 10) }

// Replica is one replication channel, with names normalised across dialects.
type Replica struct {
	Channel        string
	SourceHost     string
	SourcePort     int
	SourceServerID uint32
	IORunning      IOState
	SQLRunning     bool
	// SQLState is the applier's own state (Slave_SQL_Running_State), which
	// says whether it has read everything in the relay log.
	SQLState string
	IOErrno  int
	IOError  string
	SQLErrno int
	SQLError string
	// SecondsBehind is nil when the server reports NULL (a thread stopped).
	SecondsBehind *int64
	// Received (IO thread) and applied (SQL thread) source coordinates.
	SourceLogFile      string
	ReadSourceLogPos   uint64
	RelaySourceLogFile string
	ExecSourceLogPos   uint64
	// GTID state: MariaDB Using_Gtid/Gtid_IO_Pos, MySQL Retrieved/Executed.
	UsingGTID    string
	GTIDIOPos    string
	RetrievedSet string
	ExecutedSet  string
	// AutoPosition is MySQL's Auto_Position column ("1": the channel
	// finds its position by GTID); MariaDB says the same with UsingGTID.
	AutoPosition string
	SQLDelay     int64
}

// CaughtUpFilePos reports whether everything received has been applied,
// judged by file:pos alone (valid with or without GTID).
func (r Replica) CaughtUpFilePos() bool {
	return r.RelaySourceLogFile == r.SourceLogFile && r.ExecSourceLogPos == r.ReadSourceLogPos
}

func (p *Prober) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if p.QueryTimeout <= 0 {
		return context.WithTimeout(ctx, 500*time.Millisecond)
	}
	return context.WithTimeout(ctx, p.QueryTimeout)
}

// Version reads and parses the server version.
func (p *Prober) Version(ctx context.Context) (Version, uint32, error) {
	qctx, cancel := p.ctx(ctx)
	defer cancel()
	var ver, comment string
	var id uint32
	if err := p.Q.QueryRowContext(qctx, "SELECT @@version, @@version_comment, @@server_id").Scan(&ver, &comment, &id); err != nil {
		return Version{}, 0, fmt.Errorf("reading server version: %w", err)
	}
	v, err := ParseVersion(ver, comment)
	return v, id, err
}

// Snapshot reads the whole state. Any error means the state is unknown.
func (p *Prober) Snapshot(ctx context.Context) (*Snapshot, error) {
	start := time.Now()
	v, id, err := p.Version(ctx)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Version: v, ServerID: id}
	qctx, cancel := p.ctx(ctx)
	var ro, sro int
	err = p.Q.QueryRowContext(qctx, variablesQuery(v)).Scan(&ro, &sro, &s.GTIDMode,
		&s.GTIDBinlogPos, &s.GTIDCurrentPos, &s.GTIDSlavePos, &s.GTIDExecuted)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("reading read_only and GTID state: %w", err)
	}
	s.ReadOnly, s.SuperReadOnly = ro != 0, sro != 0
	if s.Replicas, err = p.Replicas(ctx, v); err != nil {
		return nil, err
	}
	if p.Binlog {
		if s.Binlog, err = p.BinlogPos(ctx, v); err != nil {
			return nil, err
		}
	}
	if p.WithSemiSync {
		ss, err := p.SemiSync(ctx)
		if err != nil {
			return nil, err
		}
		s.SemiSync = &ss
	}
	// A writer's lag is not a question: its own heartbeat row is current
	// and the peer's row is stale by design.
	if p.HeartbeatTable != "" && !s.Writable() {
		srcID := p.HeartbeatServerID
		if srcID == 0 && len(s.Replicas) > 0 {
			srcID = s.Replicas[0].SourceServerID
		}
		if srcID != 0 && srcID != s.ServerID {
			if s.HeartbeatLag, err = p.HeartbeatLag(ctx, srcID); err != nil {
				return nil, err
			}
		}
	}
	s.Took = time.Since(start)
	return s, nil
}

// Replicas reads every replication channel.
func (p *Prober) Replicas(ctx context.Context, v Version) ([]Replica, error) {
	q := replicaStatusQuery(v)
	cols, rows, err := p.queryStrings(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	reps, err := ParseReplicaStatus(cols, rows)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	return reps, nil
}

// BinlogPos reads the own binary log coordinates; nil when binlog is off.
func (p *Prober) BinlogPos(ctx context.Context, v Version) (*BinlogPos, error) {
	q := binlogStatusQuery(v)
	cols, rows, err := p.queryStrings(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", q, err)
	}
	return ParseBinlogStatus(cols, rows)
}

// HeartbeatLag reads pt-heartbeat's row for the source server id and returns
// now minus its timestamp, computed on this server's clock. A missing row is
// an error: lag is then unknown, never zero.
func (p *Prober) HeartbeatLag(ctx context.Context, sourceID uint32) (*time.Duration, error) {
	now := "UTC_TIMESTAMP(6)"
	if !p.HeartbeatUTC {
		now = "NOW(6)"
	}
	// The table name was validated by config as db.table of safe characters.
	db, tbl, _ := strings.Cut(p.HeartbeatTable, ".")
	q := fmt.Sprintf("SELECT TIMESTAMPDIFF(MICROSECOND, CAST(ts AS DATETIME(6)), %s) FROM `%s`.`%s` WHERE server_id = ?", now, db, tbl)
	qctx, cancel := p.ctx(ctx)
	defer cancel()
	var us sql.NullInt64
	err := p.Q.QueryRowContext(qctx, q, sourceID).Scan(&us)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("heartbeat table %s has no row for server_id %d (is pt-heartbeat --update running on the writer?)", p.HeartbeatTable, sourceID)
	}
	if err != nil {
		return nil, fmt.Errorf("reading heartbeat table %s: %w", p.HeartbeatTable, err)
	}
	if !us.Valid {
		return nil, fmt.Errorf("heartbeat table %s: unparsable ts for server_id %d", p.HeartbeatTable, sourceID)
	}
	d := time.Duration(us.Int64) * time.Microsecond
	if d < 0 {
		d = 0 // clock skew between the nodes; the row cannot be from the future
	}
	return &d, nil
}

// queryStrings runs a SHOW statement and returns its columns and rows as
// nullable strings; the parsers work on this recorded form, which is what
// the MySQL-8 dialect tests feed them.
func (p *Prober) queryStrings(ctx context.Context, q string) ([]string, [][]*string, error) {
	qctx, cancel := p.ctx(ctx)
	defer cancel()
	rs, err := p.Q.QueryContext(qctx, q)
	if err != nil {
		return nil, nil, err
	}
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return nil, nil, err
	}
	var out [][]*string
	for rs.Next() {
		raw := make([]sql.RawBytes, len(cols))
		dst := make([]any, len(cols))
		for i := range raw {
			dst[i] = &raw[i]
		}
		if err := rs.Scan(dst...); err != nil {
			return nil, nil, err
		}
		row := make([]*string, len(cols))
		for i, b := range raw {
			if b != nil {
				s := string(b)
				row[i] = &s
			}
		}
		out = append(out, row)
	}
	return cols, out, rs.Err()
}

// ParseReplicaStatus turns SHOW [ALL] SLAVE|REPLICA STATUS rows into Replicas.
func ParseReplicaStatus(cols []string, rows [][]*string) ([]Replica, error) {
	idx := make(map[string]int, len(cols))
	for i, c := range cols {
		idx[canonicalColumn(c)] = i
	}
	for _, need := range []string{"Slave_IO_Running", "Slave_SQL_Running", "Master_Host"} {
		if _, ok := idx[need]; !ok && len(rows) > 0 {
			return nil, fmt.Errorf("unexpected result: no column %q", need)
		}
	}
	var out []Replica
	for _, row := range rows {
		if len(row) != len(cols) {
			return nil, fmt.Errorf("unexpected result: %d values for %d columns", len(row), len(cols))
		}
		get := func(name string) string {
			if i, ok := idx[name]; ok && row[i] != nil {
				return *row[i]
			}
			return ""
		}
		var perr error
		num := func(name string) uint64 {
			s := get(name)
			if s == "" {
				return 0
			}
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil && perr == nil {
				perr = fmt.Errorf("column %s: %q is not a number", name, s)
			}
			return n
		}
		r := Replica{
			Channel:            get("Channel"),
			SourceHost:         get("Master_Host"),
			SourcePort:         int(num("Master_Port")),
			SourceServerID:     uint32(num("Master_Server_Id")),
			IORunning:          IOState(get("Slave_IO_Running")),
			SQLState:           get("Slave_SQL_Running_State"),
			SQLRunning:         get("Slave_SQL_Running") == "Yes",
			IOErrno:            int(num("Last_IO_Errno")),
			IOError:            get("Last_IO_Error"),
			SQLErrno:           int(num("Last_SQL_Errno")),
			SQLError:           get("Last_SQL_Error"),
			SourceLogFile:      get("Master_Log_File"),
			ReadSourceLogPos:   num("Read_Master_Log_Pos"),
			RelaySourceLogFile: get("Relay_Master_Log_File"),
			ExecSourceLogPos:   num("Exec_Master_Log_Pos"),
			UsingGTID:          get("Using_Gtid"),
			GTIDIOPos:          get("Gtid_IO_Pos"),
			RetrievedSet:       get("Retrieved_Gtid_Set"),
			ExecutedSet:        get("Executed_Gtid_Set"),
			AutoPosition:       get("Auto_Position"),
			SQLDelay:           int64(num("SQL_Delay")),
		}
		if !r.IORunning.Known() {
			return nil, fmt.Errorf("unexpected IO thread state %q", r.IORunning)
		}
		if s := get("Seconds_Behind_Master"); s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("column Seconds_Behind_Master: %q is not a number", s)
			}
			r.SecondsBehind = &n
		}
		if perr != nil {
			return nil, perr
		}
		out = append(out, r)
	}
	return out, nil
}

// ParseBinlogStatus reads SHOW MASTER|BINARY LOG STATUS; no row means binary
// logging is off.
func ParseBinlogStatus(cols []string, rows [][]*string) (*BinlogPos, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	if len(cols) < 2 || cols[0] != "File" || cols[1] != "Position" || len(rows[0]) < 2 || rows[0][0] == nil || rows[0][1] == nil {
		return nil, fmt.Errorf("unexpected binlog status columns %q", cols)
	}
	pos, err := strconv.ParseUint(*rows[0][1], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("binlog position %q is not a number", *rows[0][1])
	}
	return &BinlogPos{File: *rows[0][0], Pos: pos}, nil
}
