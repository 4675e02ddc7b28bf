package doctor

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vipguard/vipguard/internal/probe"
)

var (
	maria1011 = probe.Version{Flavor: probe.MariaDB, Major: 10, Minor: 11, Patch: 19}
	maria104  = probe.Version{Flavor: probe.MariaDB, Major: 10, Minor: 4, Patch: 34}
	mysql8    = probe.Version{Flavor: probe.MySQL, Major: 8, Minor: 0, Patch: 36}
	mysql57   = probe.Version{Flavor: probe.MySQL, Major: 5, Minor: 7, Patch: 44}
)

// fixture reads a testdata file's lines.
func fixture(t testing.TB, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// showPrivileges reads a recorded SHOW PRIVILEGES.
func showPrivileges(t testing.TB, name string) []Privilege {
	t.Helper()
	var ps []Privilege
	for _, l := range fixture(t, name) {
		f := strings.Split(l, "\t")
		ps = append(ps, Privilege{Name: f[0], Context: f[1]})
	}
	return ps
}

func TestParseGrants(t *testing.T) {
	for _, c := range []struct {
		line string
		want *Grant // nil: skipped
	}{
		{"GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR ON *.* TO `vgdoc`@`localhost` IDENTIFIED BY PASSWORD '*7707CF97396EC746CA374E06B75C6D5CFFD9518D'",
			&Grant{Privs: []string{"PROCESS", "BINLOG MONITOR", "SLAVE MONITOR"}, DB: "*", Table: "*", Grantee: "vgdoc@localhost"}},
		{"GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED VIA unix_socket WITH GRANT OPTION",
			&Grant{Privs: []string{"ALL PRIVILEGES"}, DB: "*", Table: "*", Grantee: "root@localhost", GrantOption: true}},
		{"GRANT SELECT ON `percona`.`heartbeat` TO `vgdoc`@`localhost`",
			&Grant{Privs: []string{"SELECT"}, DB: "percona", Table: "heartbeat", Grantee: "vgdoc@localhost"}},
		{"GRANT SELECT, INSERT ON `test\\_%`.* TO PUBLIC",
			&Grant{Privs: []string{"SELECT", "INSERT"}, DB: `test\_%`, Table: "*", Grantee: "PUBLIC"}},
		{"GRANT SELECT (`b c`, `a`), INSERT ON `app`.`t` TO `vgdoc`@`localhost`",
			&Grant{Privs: []string{"SELECT (`b c`, `a`)", "INSERT"}, DB: "app", Table: "t", Grantee: "vgdoc@localhost"}},
		{"GRANT EXECUTE ON PROCEDURE `app`.`p` TO `vgdoc`@`localhost`",
			&Grant{Privs: []string{"EXECUTE"}, Kind: "PROCEDURE", DB: "app", Table: "p", Grantee: "vgdoc@localhost"}},
		{"GRANT SUPER ON *.* TO `dba`", &Grant{Privs: []string{"SUPER"}, DB: "*", Table: "*", Grantee: "dba"}},
		// MySQL 8: dynamic privileges without spaces; a table named
		// like a keyword; MySQL 5.7 and MariaDB 10.3 quote accounts with '.
		{"GRANT CONNECTION_ADMIN,REPLICATION_SLAVE_ADMIN,SYSTEM_USER ON *.* TO `v`@`localhost`",
			&Grant{Privs: []string{"CONNECTION_ADMIN", "REPLICATION_SLAVE_ADMIN", "SYSTEM_USER"}, DB: "*", Table: "*", Grantee: "v@localhost"}},
		{"GRANT SELECT ON `performance_schema`.`threads` TO `v`@`localhost`",
			&Grant{Privs: []string{"SELECT"}, DB: "performance_schema", Table: "threads", Grantee: "v@localhost"}},
		{"GRANT SELECT ON `function`.`to` TO `v`@`%`", &Grant{Privs: []string{"SELECT"}, DB: "function", Table: "to", Grantee: "v@%"}},
		{"GRANT PROCESS, REPLICATION CLIENT ON *.* TO 'vipguard'@'192.0.2.%' WITH MAX_USER_CONNECTIONS 10",
			&Grant{Privs: []string{"PROCESS", "REPLICATION CLIENT"}, DB: "*", Table: "*", Grantee: "vipguard@192.0.2.%"}},
		{"grant select on db.t to 'it''s'@'h'", &Grant{Privs: []string{"SELECT"}, DB: "db", Table: "t", Grantee: "it's@h"}},
		{"GRANT USAGE ON *.* TO `a``b`@`%` REQUIRE SSL WITH GRANT OPTION",
			&Grant{Privs: []string{"USAGE"}, DB: "*", Table: "*", Grantee: "a`b@%", GrantOption: true}},
		// Not privileges on an object, or not readable.
		{"GRANT `dba` TO `vgdoc`@`localhost`", nil},
		{"GRANT `monitoring`@`%` TO `vipguard`@`localhost`", nil},
		{"GRANT PROXY ON ``@`%` TO `vgdoc`@`localhost`", nil},
		{"SET DEFAULT ROLE `dba` FOR `vgdoc`@`localhost`", nil},
		{"REVOKE INSERT ON `mysql`.* FROM `v`@`%`", nil},
		{"GRANT SELECT ON `unterminated TO `v`@`%`", nil},
		{"GRANT SELECT ON t TO `v`@`%`", nil},
		{"GRANT SELECT ON *.t TO `v`@`%`", nil},
		{"GRANT SELECT (a ON db.t TO `v`@`%`", nil},
		{"GRANT ON *.* TO `v`@`%`", nil},
		{"GRANT SELECT ON *.* TO", nil},
		{"", nil},
	} {
		h := ParseGrants([]string{c.line})
		switch {
		case c.want == nil && len(h) != 0:
			t.Errorf("%q: got %+v, want it skipped", c.line, h[0])
		case c.want != nil && (len(h) != 1 || !reflect.DeepEqual(h[0], *c.want)):
			t.Errorf("%q: got %+v, want %+v", c.line, h, *c.want)
		}
	}
}

func TestGrantsMissing(t *testing.T) {
	for _, c := range []struct {
		name    string
		v       probe.Version
		grants  []string
		hb      string
		missing string
	}{
		{"readme block", maria1011, fixture(t, "mariadb-10.11-readme.grants"), "percona.heartbeat", ""},
		{"replication client is binlog monitor", maria1011, []string{
			"GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR, CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN ON *.* TO `v`@`%`",
		}, "", ""},
		{"all privileges", maria1011, fixture(t, "mariadb-10.11-too-much.grants"), "percona.other", ""},
		{"check only", maria1011, []string{"GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR ON *.* TO `v`@`%`"}, "",
			"CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN"},
		{"heartbeat through the database", maria1011, fixture(t, "mariadb-10.11-super.grants"), "percona.heartbeat", ""},
		{"heartbeat missing", maria1011, []string{
			"GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR, CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN ON *.* TO `v`@`%`",
			"GRANT SELECT (`ts`) ON `percona`.`heartbeat` TO `v`@`%`",
		}, "percona.heartbeat", "SELECT ON percona.heartbeat"},
		{"a routine grant is no table grant", maria1011, []string{
			"GRANT PROCESS, BINLOG MONITOR, SLAVE MONITOR, CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN ON *.* TO `v`@`%`",
			"GRANT SELECT ON PROCEDURE `percona`.`heartbeat` TO `v`@`%`",
		}, "percona.heartbeat", "SELECT ON percona.heartbeat"},
		{"mysql 8 readme", mysql8, fixture(t, "mysql-8.0-readme.grants"), "", ""},
		{"mysql 8 all", mysql8, fixture(t, "mysql-8.0-too-much.grants"), "", ""},
		{"mysql 8 without system_user", mysql8, []string{
			"GRANT PROCESS, REPLICATION CLIENT, REPLICATION SLAVE ON *.* TO `v`@`localhost`",
			"GRANT SELECT ON `performance_schema`.* TO `v`@`localhost`",
			"GRANT CONNECTION_ADMIN,REPLICATION_SLAVE_ADMIN,SYSTEM_VARIABLES_ADMIN ON *.* TO `v`@`localhost`",
		}, "", "SYSTEM_USER"},
	} {
		got := ParseGrants(c.grants).Missing(RequiredGrants(c.v, c.hb)).String()
		if got != c.missing {
			t.Errorf("%s: missing %q, want %q", c.name, got, c.missing)
		}
	}
}

// mariadbAll is what ALL PRIVILEGES ON *.* holds on MariaDB 10.11 beyond
// the README's block, in SHOW PRIVILEGES order.
const mariadbAll = "ALTER, ALTER ROUTINE, CREATE, CREATE ROUTINE, CREATE TEMPORARY TABLES, CREATE VIEW, CREATE USER, DELETE, DELETE HISTORY, " +
	"DROP, EVENT, EXECUTE, FILE, INDEX, INSERT, LOCK TABLES, REFERENCES, RELOAD, BINLOG ADMIN, BINLOG REPLAY, REPLICATION SLAVE, SELECT, " +
	"SHOW DATABASES, SHOW VIEW, SHUTDOWN, SUPER, TRIGGER, CREATE TABLESPACE, UPDATE, SET USER, FEDERATED ADMIN"

// mysqlAll is the same for the MySQL 8.0.36 fixture, in SHOW GRANTS order.
const mysqlAll = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, SHUTDOWN, FILE, REFERENCES, INDEX, ALTER, SHOW DATABASES, SUPER, " +
	"CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER, " +
	"CREATE TABLESPACE, CREATE ROLE, DROP ROLE, APPLICATION_PASSWORD_ADMIN, AUDIT_ABORT_EXEMPT, AUDIT_ADMIN, AUTHENTICATION_POLICY_ADMIN, " +
	"BACKUP_ADMIN, BINLOG_ADMIN, BINLOG_ENCRYPTION_ADMIN, CLONE_ADMIN, ENCRYPTION_KEY_ADMIN, FIREWALL_EXEMPT, FLUSH_OPTIMIZER_COSTS, " +
	"FLUSH_STATUS, FLUSH_TABLES, FLUSH_USER_RESOURCES, GROUP_REPLICATION_ADMIN, GROUP_REPLICATION_STREAM, INNODB_REDO_LOG_ARCHIVE, " +
	"INNODB_REDO_LOG_ENABLE, PASSWORDLESS_USER_ADMIN, PERSIST_RO_VARIABLES_ADMIN, REPLICATION_APPLIER, RESOURCE_GROUP_ADMIN, " +
	"RESOURCE_GROUP_USER, ROLE_ADMIN, SENSITIVE_VARIABLES_OBSERVER, SERVICE_CONNECTION_ADMIN, SESSION_VARIABLES_ADMIN, SET_USER_ID, " +
	"SHOW_ROUTINE, TABLE_ENCRYPTION_ADMIN, TELEMETRY_LOG_ADMIN, XA_RECOVER_ADMIN"

func TestGrantsExcess(t *testing.T) {
	known := showPrivileges(t, "mariadb-10.11-show-privileges.tsv")
	const me, from, to = "vgdoc@localhost", " FROM `vgdoc`@`localhost`", " TO `vgdoc`@`localhost`"
	const mine, mineFrom = "vipguard@localhost", " FROM `vipguard`@`localhost`"
	readme := fixture(t, "mariadb-10.11-readme.grants")[0]
	for _, c := range []struct {
		name    string
		v       probe.Version
		grants  []string
		hb      string
		account string
		known   []Privilege
		held    []string // nil: nothing beyond need
		fix     []string
	}{
		{"readme block", maria1011, fixture(t, "mariadb-10.11-readme.grants"), "percona.heartbeat", me, known, nil, nil},
		{"readme block, no heartbeat configured", maria1011, fixture(t, "mariadb-10.11-readme.grants"), "", me, known,
			[]string{"SELECT ON `percona`.`heartbeat`"}, []string{"REVOKE SELECT ON `percona`.`heartbeat`" + from}},
		{"all privileges", maria1011, fixture(t, "mariadb-10.11-too-much.grants"), "percona.heartbeat", me, known,
			[]string{"ALL PRIVILEGES, GRANT OPTION ON *.*", "ALL PRIVILEGES ON `app`.*", "SELECT (`b c`, `a`), INSERT ON `app`.`t`", "EXECUTE ON PROCEDURE `app`.`p`"},
			[]string{
				"REVOKE " + mariadbAll + ", GRANT OPTION ON *.*" + from,
				"REVOKE ALL PRIVILEGES ON `app`.*" + from,
				"REVOKE SELECT (`b c`, `a`), INSERT ON `app`.`t`" + from,
				"REVOKE EXECUTE ON PROCEDURE `app`.`p`" + from,
			}},
		{"all privileges, the server's privilege list unknown", maria1011, fixture(t, "mariadb-10.11-too-much.grants"), "percona.heartbeat", me, nil,
			[]string{"ALL PRIVILEGES, GRANT OPTION ON *.*", "ALL PRIVILEGES ON `app`.*", "SELECT (`b c`, `a`), INSERT ON `app`.`t`", "EXECUTE ON PROCEDURE `app`.`p`"},
			[]string{
				"REVOKE ALL PRIVILEGES ON *.*" + from,
				"REVOKE GRANT OPTION ON *.*" + from,
				"REVOKE ALL PRIVILEGES ON `app`.*" + from,
				"REVOKE SELECT (`b c`, `a`), INSERT ON `app`.`t`" + from,
				"REVOKE EXECUTE ON PROCEDURE `app`.`p`" + from,
				"GRANT PROCESS, SLAVE MONITOR, BINLOG MONITOR, CONNECTION ADMIN, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN ON *.*" + to,
			}},
		{"super and data privileges; heartbeat through the database", maria1011, fixture(t, "mariadb-10.11-super.grants"), "percona.heartbeat", me, known,
			[]string{"SELECT, RELOAD, SHUTDOWN, FILE, SUPER, CREATE USER ON *.*", "SELECT ON `percona`.*"},
			[]string{
				"GRANT SELECT ON `percona`.`heartbeat`" + to,
				"REVOKE SELECT, RELOAD, SHUTDOWN, FILE, SUPER, CREATE USER ON *.*" + from,
				"REVOKE SELECT ON `percona`.*" + from,
			}},
		{"grant option only", maria1011, []string{strings.Replace(readme, "IDENTIFIED BY", "WITH GRANT OPTION IDENTIFIED BY", 1)}, "", me, known,
			[]string{"GRANT OPTION ON *.*"}, []string{"REVOKE GRANT OPTION ON *.*" + from}},
		{"all privileges on the heartbeat table", maria1011, []string{readme, "GRANT ALL PRIVILEGES ON `percona`.`heartbeat` TO `vgdoc`@`localhost`"},
			"percona.heartbeat", me, known,
			[]string{"ALL PRIVILEGES ON `percona`.`heartbeat`"},
			[]string{"REVOKE ALTER, CREATE, CREATE VIEW, DELETE, DELETE HISTORY, DROP, INDEX, INSERT, REFERENCES, SHOW VIEW, TRIGGER, UPDATE ON `percona`.`heartbeat`" + from}},
		{"another account's and PUBLIC's grants are not this one's", maria1011, []string{
			readme,
			"GRANT ALL PRIVILEGES ON *.* TO `dba`",
			"GRANT SELECT, INSERT ON `test`.* TO PUBLIC",
		}, "", me, known, nil, nil},
		{"account unknown: every user@host line is its own", maria1011, []string{readme, "GRANT FILE ON *.* TO `vgdoc`@`localhost`", "GRANT SUPER ON *.* TO `dba`"},
			"", "", known, []string{"FILE ON *.*"}, []string{"REVOKE FILE ON *.*" + from}},
		{"mariadb 10.4 needs super", maria104, []string{"GRANT PROCESS, REPLICATION CLIENT, SUPER ON *.* TO 'vipguard'@'localhost'"}, "", mine, nil, nil, nil},
		{"mariadb 10.4, data privileges", maria104, []string{"GRANT SELECT, INSERT, PROCESS, REPLICATION CLIENT, SUPER ON *.* TO 'vipguard'@'localhost'"}, "", mine, nil,
			[]string{"SELECT, INSERT ON *.*"}, []string{"REVOKE SELECT, INSERT ON *.*" + mineFrom}},
		{"mysql 5.7 needs super", mysql57, []string{
			"GRANT PROCESS, REPLICATION SLAVE, REPLICATION CLIENT, SUPER ON *.* TO 'vipguard'@'localhost'",
		}, "", mine, nil, nil, nil},
		{"mysql 5.7 all privileges", mysql57, []string{"GRANT ALL PRIVILEGES ON *.* TO 'vipguard'@'localhost' WITH GRANT OPTION"}, "", mine, nil,
			[]string{"ALL PRIVILEGES, GRANT OPTION ON *.*"},
			[]string{"REVOKE ALL PRIVILEGES ON *.*" + mineFrom, "REVOKE GRANT OPTION ON *.*" + mineFrom,
				"GRANT PROCESS, REPLICATION CLIENT, SUPER, REPLICATION SLAVE ON *.* TO `vipguard`@`localhost`"}},
		{"mysql 8 readme", mysql8, fixture(t, "mysql-8.0-readme.grants"), "", mine, nil, nil, nil},
		{"mysql 8 all, and a database", mysql8, fixture(t, "mysql-8.0-too-much.grants"), "", mine, nil,
			[]string{mysqlAll + ", GRANT OPTION ON *.*", "ALL PRIVILEGES ON `app`.*"},
			[]string{"REVOKE " + mysqlAll + ", GRANT OPTION ON *.*" + mineFrom, "REVOKE ALL PRIVILEGES ON `app`.*" + mineFrom}},
		{"mysql 8 super where the version has finer privileges", mysql8, append(fixture(t, "mysql-8.0-readme.grants"),
			"GRANT SUPER ON *.* TO `vipguard`@`localhost`"), "", mine, nil,
			[]string{"SUPER ON *.*"}, []string{"REVOKE SUPER ON *.*" + mineFrom}},
		{"mysql 8 performance_schema through a global SELECT", mysql8, []string{
			"GRANT SELECT, PROCESS, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `vipguard`@`localhost`",
			"GRANT CONNECTION_ADMIN,REPLICATION_SLAVE_ADMIN,SYSTEM_USER,SYSTEM_VARIABLES_ADMIN ON *.* TO `vipguard`@`localhost`",
			"GRANT SELECT ON `performance_schema`.`threads` TO `vipguard`@`localhost`",
		}, "", mine, nil,
			[]string{"SELECT ON *.*"},
			[]string{
				"GRANT SELECT ON `performance_schema`.`replication_applier_status_by_worker` TO `vipguard`@`localhost`",
				"REVOKE SELECT ON *.*" + mineFrom,
			}},
	} {
		x := ParseGrants(c.grants).Excess(c.account, RequiredGrants(c.v, c.hb), c.known)
		if !slices.Equal(x.Held, c.held) {
			t.Errorf("%s: held\n%q\nwant\n%q", c.name, x.Held, c.held)
		}
		if !slices.Equal(x.Fix, c.fix) {
			t.Errorf("%s: fix\n%q\nwant\n%q", c.name, x.Fix, c.fix)
		}
	}
}

// FuzzParseGrants: no line a server sends makes the parser panic, what
// it reads prints back as a GRANT it reads the same, and the decisions
// over it do not panic either.
func FuzzParseGrants(f *testing.F) {
	for _, name := range []string{"mariadb-10.11-readme.grants", "mariadb-10.11-super.grants", "mariadb-10.11-too-much.grants",
		"mysql-8.0-readme.grants", "mysql-8.0-too-much.grants"} {
		for _, l := range fixture(f, name) {
			f.Add(l)
		}
	}
	f.Add("GRANT SELECT (`a`, 'b') ON PACKAGE BODY `d`.`p` TO 'u'@'h' WITH GRANT OPTION")
	f.Add("GRANT SELECT ON `unterminated")
	f.Fuzz(func(t *testing.T, line string) {
		h := ParseGrants([]string{line})
		for _, g := range h {
			again := ParseGrants([]string{g.String()})
			if len(again) != 1 || !reflect.DeepEqual(again[0], g) {
				t.Fatalf("%q read as %+v, printed as %q, read back as %+v", line, g, g.String(), again)
			}
		}
		for _, v := range []probe.Version{maria1011, mysql8} {
			r := RequiredGrants(v, "percona.heartbeat")
			h.Missing(r)
			h.Excess("vgdoc@localhost", r, nil)
			h.Excess("", r, []Privilege{{"Select", "Tables"}, {"Super", "Server Admin"}})
		}
	})
}
