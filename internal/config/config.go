// Package config loads vipguard's single TOML configuration file, shared by
// mysqlcheck, agentcheck and notify.
//
// The Config struct below is the reference: every field is documented where it
// is declared, and examples/vipguard.toml is a complete commented copy of it.
// Decoding is strict (an unknown key is an error naming its line), and all
// validation lives in Validate so that every binary refuses the same files.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where every binary looks when -c is not given.
const DefaultPath = "/etc/vipguard/vipguard.toml"

// Config is the whole vipguard configuration.
type Config struct {
	// StateDir holds the maintenance flag and the outcome of the last notify
	// transition. Give each node on one machine its own (the lab does).
	StateDir string `toml:"state_dir"`

	// MySQL is the local server this node guards.
	MySQL MySQL `toml:"mysql"`

	// Peer is the other node of the pair (used by notify to fence it).
	Peer Peer `toml:"peer"`

	// VIP is the virtual address keepalived moves between the nodes.
	VIP VIP `toml:"vip"`

	// Check tunes the verdict of mysqlcheck (and agentcheck's health view).
	Check Check `toml:"check"`

	// Heartbeat reads replication lag from a pt-heartbeat table instead of
	// Seconds_Behind_Master (which is NULL or 0 exactly when it matters).
	Heartbeat Heartbeat `toml:"heartbeat"`

	// Notify tunes notify's fence and promotion.
	Notify Notify `toml:"notify"`

	// SemiSync tunes the handling of semi-synchronous replication, which
	// needs no setting when the servers have it enabled.
	SemiSync SemiSync `toml:"semi_sync"`

	// Agent configures agentcheck, the HAProxy agent-check and HTTP
	// health-check responder.
	Agent Agent `toml:"agent"`

	// path is the file this was loaded from ("" for built-in defaults).
	path string
}

// MySQL says how to reach the local server.
type MySQL struct {
	// Socket is the unix socket; used when Host is empty.
	// Default: /run/mysqld/mysqld.sock, as on Debian.
	Socket string `toml:"socket"`
	// Host, when set, makes the tools connect over TCP instead of Socket.
	Host string `toml:"host"`
	// Port for Host, and the port this node's server listens on for its
	// clients (a fence closes their sessions when the server hangs).
	// Default 3306.
	Port int `toml:"port"`
	// User to log in as. Default: the invoking OS user (root over the socket
	// authenticates with unix_socket on Debian, no password needed).
	User string `toml:"user"`
	// Password for User. Prefer DefaultsFile. A file holding a password must
	// not be readable by others.
	Password string `toml:"password"`
	// DefaultsFile is a MySQL option file (like /etc/mysql/debian.cnf) whose
	// [client] section supplies user, password, socket, host and port. Values
	// set in this TOML file win over it.
	DefaultsFile string `toml:"defaults_file"`
	// ConnectTimeout bounds dialling and the handshake. Default 250ms.
	ConnectTimeout Duration `toml:"connect_timeout"`
	// QueryTimeout bounds every single statement. Default 500ms.
	QueryTimeout Duration `toml:"query_timeout"`

	// set names the keys given in the TOML file: those win over DefaultsFile.
	set map[string]bool
}

// Peer is the other node of the pair.
type Peer struct {
	// Host of the peer's MySQL server. Empty: no peer configured.
	Host string `toml:"host"`
	// Port of the peer's MySQL server. Default 3306.
	Port int `toml:"port"`
	// User notify logs in as on the peer to fence it (needs PROCESS,
	// CONNECTION ADMIN and READ_ONLY ADMIN on MariaDB; SUPER or
	// CONNECTION_ADMIN and SYSTEM_VARIABLES_ADMIN on MySQL). Default:
	// mysql.user.
	User string `toml:"user"`
	// Password for User. Default: mysql.password (when User is also
	// defaulted). A file holding a password must not be readable by others.
	Password string `toml:"password"`
	// Agent is the peer's agentcheck HTTP address ("host:port"), where
	// vipguard status and switchover read the peer's state
	// (/status.json). Default: host, with the port of agent.http_listen.
	Agent string `toml:"agent"`
}

// VIP is the virtual IP keepalived manages.
type VIP struct {
	// Address is the VIP, an IPv4 or IPv6 address without prefix length.
	Address string `toml:"address"`
}

// Check tunes mysqlcheck's verdict.
type Check struct {
	// Timeout is mysqlcheck's hard deadline for the whole evaluation; past it
	// the node is reported unfit. Keep it well under keepalived's interval.
	// Default 800ms.
	Timeout Duration `toml:"timeout"`
	// MaxLag above which a node that is not the writer is unfit. 0 disables.
	// Default 300s.
	MaxLag Duration `toml:"max_lag"`
	// WarnLag is the lag at which the Nagios mode says WARNING. Default 30s.
	WarnLag Duration `toml:"warn_lag"`
	// RequireReplication makes a read-only node without any replication
	// channel unfit: it could never have the writer's data. Default true.
	RequireReplication *bool `toml:"require_replication"`
	// FailOnReplicationError makes a read-only node whose SQL thread is
	// stopped, or whose IO thread stopped on an error other than "cannot
	// reach the source", unfit. Default true.
	FailOnReplicationError *bool `toml:"fail_on_replication_error"`
	// Witnesses are "ip:port" addresses of which this node must reach at
	// least one to be fit. A TCP connect that succeeds or is refused proves
	// the path; a timeout or an unreachable network does not. It makes a
	// VIP holder cut off from the network with its link up (keepalived
	// cannot see that: it only stops hearing the peer) unfit, so that it
	// drops the VIP and notify fences it, instead of staying writable beside
	// the peer that takes over. Pick hosts on the clients' side of the
	// network that both nodes reach (the default gateway, the HAProxy
	// hosts) and a port where nothing listens (the host answers with a
	// reset): a real service sees a connection every check, and a MySQL
	// port, or a HAProxy frontend in front of one, would count each as an
	// aborted connection until max_connect_errors blocks the host. If every
	// witness is down, both nodes are unfit (no writer rather than two):
	// list more than one. notify asks them too: a promotion that cannot
	// reach the peer opens writes only if a witness answers. Empty
	// (default): no witness check.
	Witnesses []string `toml:"witnesses"`
	// WitnessTimeout bounds the connects to the witnesses, which run
	// alongside the MySQL probe. Default 300ms; below timeout.
	WitnessTimeout Duration `toml:"witness_timeout"`
	// LearnedWitnessPort is the port asked on the witnesses learned while
	// witnesses is empty: agentcheck learns the hosts whose HAProxy
	// agent-checks it (the proxies), and they are asked on this port like
	// configured witnesses. Pick a port nothing listens on and no
	// firewall drops, so the proxy host answers with a reset. Default 9
	// (discard).
	LearnedWitnessPort int `toml:"learned_witness_port"`
	// NagiosMaintenance is the status mysqlcheck --nagios reports while
	// maintenance is on: "ok" (default) or "warning". Maintenance is
	// planned, so it never pages as CRITICAL; keepalived still sees unfit.
	NagiosMaintenance string `toml:"nagios_maintenance"`

	maxLagSet bool // max_lag = "0s" in the file disables the limit
}

// Heartbeat configures pt-heartbeat based lag.
type Heartbeat struct {
	// Table, as "database.table", written by pt-heartbeat --update on the
	// writer. Empty (default): use Seconds_Behind_Master.
	Table string `toml:"table"`
	// ServerID of the writer row to read. Default 0: the replication
	// source's server_id (Master_Server_Id).
	ServerID uint32 `toml:"server_id"`
	// UTC says pt-heartbeat runs with --utc. Default true; false compares
	// with the server's local time, as pt-heartbeat does without --utc.
	UTC *bool `toml:"utc"`
}

// Agent configures agentcheck serve (and inetd, status).
type Agent struct {
	// Listen is the TCP address for HAProxy agent-check (agent-port).
	// Empty disables it. Default ":9201". Ignored for sockets handed over
	// by systemd socket activation.
	Listen string `toml:"listen"`
	// HTTPListen is the TCP address for HTTP health checks (option
	// httpchk, /metrics). Empty disables it. Default ":9200", the port of
	// clustercheck.
	HTTPListen string `toml:"http_listen"`
	// Interval between two polls of MySQL; every check is answered from
	// the last poll. Default 1s.
	Interval Duration `toml:"interval"`
	// StaleAfter is the age past which the cached state is not trusted and
	// every role answers down. Must be longer than Interval. Default 3s.
	StaleAfter Duration `toml:"stale_after"`
	// MaxLag is the replication lag above which a reader answers down
	// (/replica?max_lag= overrides it per request). Default 60s.
	MaxLag Duration `toml:"max_lag"`
	// FullWeightLag is the lag up to which a reader keeps 100% weight; the
	// weight then falls linearly to MinWeight at MaxLag. Default 1s.
	FullWeightLag Duration `toml:"full_weight_lag"`
	// MinWeight is the lowest weight (percent, 1-100) of a reader that is
	// still up. Default 10.
	MinWeight int `toml:"min_weight"`
	// Maintenance is the answer while the maintenance flag is on: "drain"
	// (weight 0%: no new connections, sessions finish) or "maint" (down:
	// with on-marked-down shutdown-sessions, sessions are closed).
	// Default "drain".
	Maintenance string `toml:"maintenance"`
	// MaxConns caps concurrent check connections; more are closed at once.
	// Default 256.
	MaxConns int `toml:"max_conns"`
	// IOTimeout bounds reading a request and writing its answer, for the
	// whole connection. Default 2s.
	IOTimeout Duration `toml:"io_timeout"`
	// Allow lists the client networks that may ask (CIDRs such as
	// "192.0.2.0/24", or single addresses): the HAProxy hosts and the
	// monitoring. Anyone else's connection is closed at accept, before a
	// byte is read. Empty (default): every client may ask. A firewall
	// rule does the same job earlier; see cmd/agentcheck/README.md.
	Allow []string `toml:"allow"`
	// Pair names the pair this node belongs to, the same on both nodes
	// (say "orders-db"): /metrics puts it on vipguard_node_info, so that
	// one set of alert rules tells the pairs of a fleet apart. At most 64
	// letters, digits and "_.:-", starting with a letter or digit. Empty
	// (default): no pair label; set it, or give each pair's scrape
	// targets a "pair" label in Prometheus.
	Pair string `toml:"pair"`

	// TrackFile is the keepalived track_file that agentcheck serve keeps
	// (docs/fast-failover.md): "0" while this node is fit to hold the VIP,
	// "1" once it is not, each followed by who wrote it and why. With
	// "weight 0" keepalived puts the instance in FAULT the moment the
	// file says non-zero (inotify, no polling). It is replaced by rename,
	// so keepalived never reads half a value, and refreshed every
	// TrackInterval, so that mysqlcheck can tell a stale file. Its
	// directory must exist before keepalived starts and never be removed
	// (keepalived drops a track file whose directory is missing and
	// watches the directory, not the file). Default: mysql.track in
	// state_dir. "" in the file disables the fast path.
	TrackFile string `toml:"track_file"`
	// TrackInterval between two polls of the fast path, each on a fresh
	// connection, judged by mysqlcheck's rules. Default 200ms.
	TrackInterval Duration `toml:"track_interval"`
	// TrackTimeout bounds one poll of the fast path; at most
	// TrackInterval. Default 150ms.
	TrackTimeout Duration `toml:"track_timeout"`
	// UnresponsiveAfter is how long mysqld may give no answer before the
	// node is unfit: that many TrackIntervals (rounded up) of polls in a
	// row without an answer flip the track file. A single slow poll never
	// does; a refused connection or a missing socket (mysqld is not
	// running) flips it at once. At least 2 x TrackInterval. Default
	// 1.4s: a stall of 1 s is ridden out, a freeze is seen after about
	// 1.4 s.
	UnresponsiveAfter Duration `toml:"unresponsive_after"`
	// TrackStaleAfter is the age past which mysqlcheck no longer believes
	// the track file (agentcheck is dead or hung) and rewrites it with its
	// own verdict, so that a stale "1" cannot pin the node in FAULT.
	// Longer than 2 x TrackInterval. Default 2s.
	TrackStaleAfter Duration `toml:"track_stale_after"`

	// listen = "" in the file disables a listener; absent means default.
	listenSet, httpListenSet, trackFileSet bool
}

// TrackFall says how many polls of the fast path in a row without an
// answer make the node unfit: UnresponsiveAfter / TrackInterval, rounded
// up.
func (a *Agent) TrackFall() int {
	iv := a.TrackInterval.Duration
	if iv <= 0 {
		return 1
	}
	return int((a.UnresponsiveAfter.Duration + iv - 1) / iv)
}

// Notify tunes notify (the fence and promotion engine).
type Notify struct {
	// Instance is the keepalived VRRP instance or group name this node's
	// MySQL follows. Events for other names are ignored, so that a
	// notify_fifo shared with other instances never fences MySQL. Empty
	// (default): every event counts.
	Instance string `toml:"instance"`
	// Policy when the promotion gate (catch-up) is not met in time:
	// "reliability" (default) stays read-only and marks the node unfit;
	// "availability" opens writes anyway and logs the risk.
	Policy string `toml:"policy"`
	// PromotionTimeout bounds the wait for catch-up under the reliability
	// policy (availability first does not wait). Default 30s.
	PromotionTimeout Duration `toml:"promotion_timeout"`
	// FenceTimeout bounds the local fence (read_only, kills, stable
	// position). Default 5s.
	FenceTimeout Duration `toml:"fence_timeout"`
	// StopTimeout bounds the whole STOP fence: keepalived SIGKILLs notify
	// about 1 s after its shutdown begins. Default 800ms.
	StopTimeout Duration `toml:"stop_timeout"`
	// PeerConnectTimeout bounds reaching the peer's server during a
	// promotion: TCP connect and its greeting. A frozen mysqld accepts
	// connections (the kernel does) but never greets; past this bound the
	// peer counts as unreachable (the witness rule applies) instead of
	// holding the promotion for the whole peer_timeout. A live server
	// greets, logs in and answers within 32 ms at worst with every core
	// saturated twice over (BenchmarkPeerGreetingSaturated: p50 about
	// 1 ms, p99 16 ms; 116 ms at worst with six spinners per core), so
	// the default is ten times the saturated worst and still above that
	// extreme one; every millisecond of it is write downtime when the old
	// writer froze. Default 300ms.
	PeerConnectTimeout Duration `toml:"peer_connect_timeout"`
	// PeerTimeout bounds reaching and fencing the peer during promotion.
	// Default 3s.
	PeerTimeout Duration `toml:"peer_timeout"`
	// StableWindow is how long the binlog/GTID position must stay unchanged
	// before it is recorded as final. Default 200ms.
	StableWindow Duration `toml:"stable_window"`
	// ReplicationTimeout bounds restarting and verifying replication at the
	// end of a fence. Default 5s.
	ReplicationTimeout Duration `toml:"replication_timeout"`
	// ExemptUsers are MySQL users whose sessions a fence never kills (for
	// example a monitoring account). Replication, event scheduler and
	// binlog dump threads are always spared.
	ExemptUsers []string `toml:"exempt_users"`
	// ResetClients makes a fence reset the stale TCP clients of vip.address
	// (needs CAP_NET_RAW), and close every TCP session of a local server
	// that does not greet within half a second (hung) but those from the
	// peer: whatever that server commits when it runs again is then
	// acknowledged to no one. That cut is blind to exempt_users. Default
	// true.
	ResetClients *bool `toml:"reset_clients"`
}

// SemiSync tunes the handling of semi-synchronous replication. vipguard
// turns it on by itself when the servers have it: a server with
// rpl_semi_sync_slave_enabled (or _replica_) ON acknowledges its source,
// and the source side (rpl_semi_sync_master_enabled / _source_) is
// switched by role.
type SemiSync struct {
	// Manage switches the source side by role: the writer waits for
	// acknowledgements whenever an acknowledging replica is connected
	// (agentcheck turns it on when one connects), a standby never waits —
	// its applier would otherwise stall for the whole timeout when the
	// writer dies. false leaves the variables as the DBA set them; they
	// are still read and reported. Default true.
	Manage *bool `toml:"manage"`
	// FallenBackWait applies to a reliability-first promotion whose old
	// writer does not answer while semi-sync cannot vouch that every
	// acknowledged write is in this node's relay log (the old writer had
	// fallen back to asynchronous replication, or its state is not
	// known): how long to keep trying to reach the old writer, to fence
	// it and take its final position, before refusing. Default 0s: refuse
	// at once.
	FallenBackWait Duration `toml:"fallen_back_wait"`
}

// Managed reports whether notify and agentcheck switch the source side.
func (s SemiSync) Managed() bool { return s.Manage == nil || *s.Manage }

// Policy values for notify.policy.
const (
	PolicyReliability  = "reliability"
	PolicyAvailability = "availability"
)

// Duration is a time.Duration written as a Go duration string ("800ms", "2s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler for TOML strings.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"800ms\" or \"2s\")", b)
	}
	if v == 0 && bytes.ContainsAny(b, "123456789") {
		// A zero would mean "default" (or "off") where the file asked
		// for a tiny, positive value.
		return fmt.Errorf("duration %q rounds to 0 (the smallest is 1ns)", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Path returns the file the configuration came from, "" for defaults.
func (c *Config) Path() string { return c.path }

// Default returns the built-in configuration used when no file exists.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}

func boolPtr(b bool) *bool { return &b }

// applyDefaults fills every field the file left empty.
func (c *Config) applyDefaults() {
	if c.StateDir == "" {
		c.StateDir = "/var/lib/vipguard"
	}
	m := &c.MySQL
	if m.Socket == "" {
		m.Socket = "/run/mysqld/mysqld.sock"
	}
	if m.Port == 0 {
		m.Port = 3306
	}
	if m.ConnectTimeout.Duration == 0 {
		m.ConnectTimeout.Duration = 250 * time.Millisecond
	}
	if m.QueryTimeout.Duration == 0 {
		m.QueryTimeout.Duration = 500 * time.Millisecond
	}
	if c.Peer.Port == 0 {
		c.Peer.Port = 3306
	}
	k := &c.Check
	if k.Timeout.Duration == 0 {
		k.Timeout.Duration = 800 * time.Millisecond
	}
	if k.MaxLag.Duration == 0 && !k.maxLagSet {
		k.MaxLag.Duration = 300 * time.Second
	}
	if k.WarnLag.Duration == 0 {
		k.WarnLag.Duration = 30 * time.Second
	}
	if k.LearnedWitnessPort == 0 {
		k.LearnedWitnessPort = 9
	}
	if k.WitnessTimeout.Duration == 0 {
		k.WitnessTimeout.Duration = 300 * time.Millisecond
	}
	if k.NagiosMaintenance == "" {
		k.NagiosMaintenance = "ok"
	}
	if k.RequireReplication == nil {
		k.RequireReplication = boolPtr(true)
	}
	if k.FailOnReplicationError == nil {
		k.FailOnReplicationError = boolPtr(true)
	}
	if c.Heartbeat.UTC == nil {
		c.Heartbeat.UTC = boolPtr(true)
	}
	c.Agent.applyDefaults()
	if c.Agent.TrackFile == "" && !c.Agent.trackFileSet {
		c.Agent.TrackFile = filepath.Join(c.StateDir, "mysql.track")
	}
	c.Notify.applyDefaults()
}

func (a *Agent) applyDefaults() {
	if a.Listen == "" && !a.listenSet {
		a.Listen = ":9201"
	}
	if a.HTTPListen == "" && !a.httpListenSet {
		a.HTTPListen = ":9200"
	}
	if a.Interval.Duration == 0 {
		a.Interval.Duration = time.Second
	}
	if a.StaleAfter.Duration == 0 {
		a.StaleAfter.Duration = 3 * a.Interval.Duration
	}
	if a.MaxLag.Duration == 0 {
		a.MaxLag.Duration = 60 * time.Second
	}
	if a.FullWeightLag.Duration == 0 {
		a.FullWeightLag.Duration = time.Second
	}
	if a.MinWeight == 0 {
		a.MinWeight = 10
	}
	if a.Maintenance == "" {
		a.Maintenance = "drain"
	}
	if a.MaxConns == 0 {
		a.MaxConns = 256
	}
	if a.IOTimeout.Duration == 0 {
		a.IOTimeout.Duration = 2 * time.Second
	}
	if a.TrackInterval.Duration == 0 {
		a.TrackInterval.Duration = 200 * time.Millisecond
	}
	if a.TrackTimeout.Duration == 0 {
		a.TrackTimeout.Duration = 150 * time.Millisecond
	}
	if a.UnresponsiveAfter.Duration == 0 {
		a.UnresponsiveAfter.Duration = 1400 * time.Millisecond
	}
	if a.TrackStaleAfter.Duration == 0 {
		a.TrackStaleAfter.Duration = 2 * time.Second
	}
}

// Load reads the configuration. An empty path means DefaultPath, and a
// missing default file means built-in defaults (zero-config on a Debian
// host); an explicitly named file must exist.
func Load(path string) (*Config, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultPath
	}
	data, fi, err := readTrusted("config", path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			c := Default()
			return c, c.resolve()
		}
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %q: %w", path, err)
	}
	c.path = path
	if c.MySQL.Password != "" || c.Peer.Password != "" {
		if err := checkSecretPerm(path, fi.Mode()); err != nil {
			return nil, err
		}
	}
	if err := c.resolve(); err != nil {
		return nil, fmt.Errorf("config %q: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates a configuration from TOML bytes. It does not
// read the defaults file (see Load).
func Parse(data []byte) (*Config, error) {
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			if pe.LastKey != "" {
				return nil, fmt.Errorf("line %d: %s: %s", pe.Position.Line, pe.LastKey, pe.Message)
			}
			return nil, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return nil, fmt.Errorf("line %d: unknown key %q", keyLine(data, k), k.String())
	}
	c.Check.maxLagSet = md.IsDefined("check", "max_lag")
	c.Agent.listenSet = md.IsDefined("agent", "listen")
	c.Agent.httpListenSet = md.IsDefined("agent", "http_listen")
	c.Agent.trackFileSet = md.IsDefined("agent", "track_file")
	c.MySQL.set = map[string]bool{}
	for _, k := range md.Keys() {
		if len(k) == 2 && k[0] == "mysql" {
			c.MySQL.set[k[1]] = true
		}
	}
	if err := explicitZeros(&c, md); err != nil {
		return nil, err
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks every value; it is the one place that says what is allowed.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !strings.HasPrefix(c.StateDir, "/") {
		bad("state_dir %q must be an absolute path", c.StateDir)
	}
	checkPort := func(key string, p int) {
		if p < 1 || p > 65535 {
			bad("%s %d is not a TCP port (1-65535)", key, p)
		}
	}
	checkPort("mysql.port", c.MySQL.Port)
	checkPort("peer.port", c.Peer.Port)
	if a := c.Peer.Agent; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			bad("peer.agent %q is not a host:port address", a)
		}
	}
	positive := func(key string, d Duration) {
		if d.Duration <= 0 {
			bad("%s must be positive, got %q", key, d.String())
		}
	}
	positive("mysql.connect_timeout", c.MySQL.ConnectTimeout)
	positive("mysql.query_timeout", c.MySQL.QueryTimeout)
	positive("check.timeout", c.Check.Timeout)
	if c.Check.Timeout.Duration > 60*time.Second {
		bad("check.timeout %q is longer than any keepalived interval should be", c.Check.Timeout.String())
	}
	positive("check.witness_timeout", c.Check.WitnessTimeout)
	if c.Check.WitnessTimeout.Duration >= c.Check.Timeout.Duration {
		bad("check.witness_timeout %q must be below check.timeout %q", c.Check.WitnessTimeout.String(), c.Check.Timeout.String())
	}
	if p := c.Check.LearnedWitnessPort; p < 1 || p > 65535 {
		bad("check.learned_witness_port %d is not a port (1 to 65535)", p)
	}
	if len(c.Check.Witnesses) > maxWitnesses {
		bad("check.witnesses lists %d addresses; at most %d", len(c.Check.Witnesses), maxWitnesses)
	}
	for _, w := range c.Check.Witnesses {
		if err := validWitness(w, c.VIP.Address); err != nil {
			bad("check.witnesses: %q: %v", w, err)
		}
	}
	if c.Check.MaxLag.Duration < 0 {
		bad("check.max_lag must not be negative, got %q", c.Check.MaxLag.String())
	}
	if c.Check.WarnLag.Duration < 0 {
		bad("check.warn_lag must not be negative, got %q", c.Check.WarnLag.String())
	}
	if m := c.Check.NagiosMaintenance; m != "ok" && m != "warning" {
		bad("check.nagios_maintenance %q must be \"ok\" or \"warning\"", m)
	}
	if t := c.Heartbeat.Table; t != "" && !validTableName(t) {
		bad("heartbeat.table %q must be \"database.table\" of letters, digits, _ and $", t)
	}
	if a := c.VIP.Address; a != "" && !validIP(a) {
		bad("vip.address %q is not an IP address", a)
	}
	n := c.Notify
	if n.Policy != PolicyReliability && n.Policy != PolicyAvailability {
		bad("notify.policy %q must be %q or %q", n.Policy, PolicyReliability, PolicyAvailability)
	}
	positive("notify.promotion_timeout", n.PromotionTimeout)
	positive("notify.fence_timeout", n.FenceTimeout)
	positive("notify.stop_timeout", n.StopTimeout)
	positive("notify.peer_timeout", n.PeerTimeout)
	positive("notify.peer_connect_timeout", n.PeerConnectTimeout)
	if n.PeerConnectTimeout.Duration > n.PeerTimeout.Duration {
		bad("notify.peer_connect_timeout %q must not be longer than notify.peer_timeout %q", n.PeerConnectTimeout.String(), n.PeerTimeout.String())
	}
	positive("notify.stable_window", n.StableWindow)
	positive("notify.replication_timeout", n.ReplicationTimeout)
	if n.StableWindow.Duration >= n.FenceTimeout.Duration {
		bad("notify.stable_window %q must be shorter than notify.fence_timeout %q", n.StableWindow.String(), n.FenceTimeout.String())
	}
	if c.SemiSync.FallenBackWait.Duration < 0 {
		bad("semi_sync.fallen_back_wait must not be negative, got %q", c.SemiSync.FallenBackWait.String())
	}
	for _, u := range n.ExemptUsers {
		if u == "" {
			bad("notify.exempt_users must not contain an empty name")
		}
	}
	c.Agent.validate(bad)
	return errors.Join(errs...)
}

// resolve merges the MySQL option file and the invoking user into c.MySQL.
func (c *Config) resolve() error {
	m := &c.MySQL
	if m.DefaultsFile != "" {
		opt, err := ReadOptionFile(m.DefaultsFile)
		if err != nil {
			return err
		}
		if m.User == "" {
			m.User = opt.User
		}
		if m.Password == "" {
			m.Password = opt.Password
		}
		if !m.set["socket"] && opt.Socket != "" {
			m.Socket = opt.Socket
		}
		if !m.set["host"] && opt.Host != "" && opt.Host != "localhost" {
			// "localhost" means the socket to every MySQL client.
			m.Host = opt.Host
		}
		if !m.set["port"] && opt.Port != 0 {
			m.Port = opt.Port
		}
	}
	if m.User == "" {
		if u, err := user.Current(); err == nil {
			m.User = u.Username
		} else {
			m.User = "root"
		}
	}
	if c.Peer.User == "" {
		// Same account on both nodes is the usual setup; a separate peer
		// password without a user would be a puzzle, so it goes with it.
		c.Peer.User = m.User
		if c.Peer.Password == "" {
			c.Peer.Password = m.Password
		}
	}
	return nil
}

func (a *Agent) validate(bad func(format string, args ...any)) {
	for key, addr := range map[string]string{"agent.listen": a.Listen, "agent.http_listen": a.HTTPListen} {
		if addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			bad("%s %q is not a host:port address", key, addr)
		}
	}
	if a.Listen != "" && a.Listen == a.HTTPListen {
		bad("agent.listen and agent.http_listen are both %q", a.Listen)
	}
	if a.Interval.Duration < 10*time.Millisecond {
		bad("agent.interval must be at least 10ms, got %q", a.Interval.String())
	}
	if a.StaleAfter.Duration <= a.Interval.Duration {
		bad("agent.stale_after %q must be longer than agent.interval %q", a.StaleAfter.String(), a.Interval.String())
	}
	if a.MaxLag.Duration <= 0 {
		bad("agent.max_lag must be positive, got %q", a.MaxLag.String())
	}
	if a.FullWeightLag.Duration < 0 || a.FullWeightLag.Duration > a.MaxLag.Duration {
		bad("agent.full_weight_lag %q must be between 0 and agent.max_lag", a.FullWeightLag.String())
	}
	if a.MinWeight < 1 || a.MinWeight > 100 {
		bad("agent.min_weight %d must be between 1 and 100", a.MinWeight)
	}
	if a.Maintenance != "drain" && a.Maintenance != "maint" {
		bad("agent.maintenance %q must be \"drain\" or \"maint\"", a.Maintenance)
	}
	if a.MaxConns < 1 {
		bad("agent.max_conns %d must be at least 1", a.MaxConns)
	}
	if a.IOTimeout.Duration <= 0 {
		bad("agent.io_timeout must be positive, got %q", a.IOTimeout.String())
	}
	if f := a.TrackFile; f != "" && (!strings.HasPrefix(f, "/") || strings.HasSuffix(f, "/") || filepath.Clean(f) != f) {
		bad("agent.track_file %q must be a clean absolute path to a file", f)
	}
	if a.TrackInterval.Duration < 10*time.Millisecond {
		bad("agent.track_interval must be at least 10ms, got %q", a.TrackInterval.String())
	}
	if a.TrackTimeout.Duration <= 0 || a.TrackTimeout.Duration > a.TrackInterval.Duration {
		bad("agent.track_timeout %q must be positive and at most agent.track_interval %q", a.TrackTimeout.String(), a.TrackInterval.String())
	}
	// One slow poll must never be enough.
	if a.UnresponsiveAfter.Duration < 2*a.TrackInterval.Duration {
		bad("agent.unresponsive_after %q must be at least twice agent.track_interval %q", a.UnresponsiveAfter.String(), a.TrackInterval.String())
	}
	// agentcheck refreshes the file every track_interval: a bound of a
	// couple of intervals would call a busy daemon dead.
	if a.TrackStaleAfter.Duration <= 2*a.TrackInterval.Duration {
		bad("agent.track_stale_after %q must be longer than twice agent.track_interval %q", a.TrackStaleAfter.String(), a.TrackInterval.String())
	}
	validAllow(a.Allow, bad)
	if !validPair(a.Pair) {
		bad("agent.pair %q must be at most 64 letters, digits and \"_.:-\", starting with a letter or digit", a.Pair)
	}
}

// validPair accepts names that need no escaping in a Prometheus label
// value, a dashboard variable or a shell: the pair's name is matched
// verbatim across both nodes and every tool.
func validPair(p string) bool {
	if len(p) > 64 {
		return false
	}
	for i, r := range p {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '_' || r == '.' || r == ':' || r == '-'):
		default:
			return false
		}
	}
	return true
}

// bareErr drops the path an *fs.PathError repeats, since messages quote it.
func bareErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// maxWitnesses bounds check.witnesses: each costs a connect per check.
const maxWitnesses = 8

// validWitness accepts "ip:port" (an IP literal: a name would cost a DNS
// lookup on every check, and DNS may be what the isolation cut off) with a
// port in 1..65535, and refuses addresses this node always reaches
// whatever the network does: loopback, unspecified, the VIP.
func validWitness(addr, vip string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want ip:port")
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("%q is not an IP address (no names: DNS may be what fails)", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not a number in 1..65535", port)
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return errors.New("this node always reaches it; name a host on the network")
	}
	if v := net.ParseIP(vip); v != nil && v.Equal(ip) {
		return errors.New("is the VIP, which the holder always reaches; name a host on the network")
	}
	return nil
}
