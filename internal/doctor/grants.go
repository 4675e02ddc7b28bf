package doctor

import (
	"regexp"
	"slices"
	"strings"

	"github.com/vipguard/vipguard/internal/probe"
)

// Required is what the README's "Required grants" block for a server
// version grants vipguard's account: Global privileges ON *.*, and SELECT
// on each of Tables.
type Required struct {
	Global []string
	Tables []string
}

// RequiredGrants is the README's block for v (mysqlcheck, agentcheck and
// notify together: both nodes run all three), plus SELECT on the
// heartbeat table when one is configured.
func RequiredGrants(v probe.Version, heartbeat string) Required {
	var r Required
	switch {
	case v.Flavor == probe.MariaDB && v.AtLeast(10, 5, 9):
		r.Global = []string{"PROCESS", "SLAVE MONITOR", "BINLOG MONITOR", "CONNECTION ADMIN", "READ_ONLY ADMIN", "REPLICATION SLAVE ADMIN", "REPLICATION MASTER ADMIN"}
	case v.Flavor == probe.MariaDB && v.AtLeast(10, 5, 2):
		r.Global = []string{"PROCESS", "BINLOG MONITOR", "REPLICATION SLAVE ADMIN", "CONNECTION ADMIN", "READ_ONLY ADMIN", "REPLICATION MASTER ADMIN"}
	case v.Flavor == probe.MariaDB:
		r.Global = []string{"PROCESS", "REPLICATION CLIENT", "SUPER"}
	case v.AtLeast(8, 0, 0):
		r.Global = []string{"PROCESS", "REPLICATION CLIENT", "CONNECTION_ADMIN", "SYSTEM_VARIABLES_ADMIN", "REPLICATION_SLAVE_ADMIN", "REPLICATION SLAVE"}
		if v.AtLeast(8, 0, 16) {
			r.Global = append(r.Global, "SYSTEM_USER")
		}
		r.Tables = []string{"performance_schema.threads", "performance_schema.replication_applier_status_by_worker"}
	default:
		r.Global = []string{"PROCESS", "REPLICATION CLIENT", "SUPER", "REPLICATION SLAVE"}
	}
	if heartbeat != "" {
		r.Tables = append(r.Tables, heartbeat)
	}
	return r
}

// Held is what SHOW GRANTS gives an account: privileges per object
// ("*.*", "db.*", "db.table"), upper case.
type Held map[string][]string

var grantRE = regexp.MustCompile("(?i)^GRANT (.+?) ON (\\S+) TO ")

// ParseGrants reads SHOW GRANTS lines. Role and proxy grants are skipped.
func ParseGrants(lines []string) Held {
	h := Held{}
	for _, l := range lines {
		m := grantRE.FindStringSubmatch(l)
		if m == nil || strings.EqualFold(m[1], "PROXY") {
			continue
		}
		obj := strings.ReplaceAll(m[2], "`", "")
		for _, p := range strings.Split(m[1], ",") {
			p = strings.ToUpper(strings.TrimSpace(p))
			if i := strings.IndexByte(p, '('); i >= 0 {
				p = strings.TrimSpace(p[:i]) // column privileges: not a table grant
				continue
			}
			h[obj] = append(h[obj], p)
		}
	}
	return h
}

// has reports whether privilege p on obj is held, directly, through
// ALL PRIVILEGES, or on a wider object (*.*, db.*).
func (h Held) has(p, obj string) bool {
	objs := []string{"*.*"}
	if db, _, ok := strings.Cut(obj, "."); ok && obj != "*.*" {
		objs = append(objs, db+".*", obj)
	}
	for _, o := range objs {
		privs := h[o]
		if slices.Contains(privs, p) || slices.Contains(privs, "ALL PRIVILEGES") || slices.Contains(privs, "ALL") {
			return true
		}
		// MariaDB 10.5.2+ shows REPLICATION CLIENT as BINLOG MONITOR,
		// its new name.
		if p == "REPLICATION CLIENT" && slices.Contains(privs, "BINLOG MONITOR") ||
			p == "BINLOG MONITOR" && slices.Contains(privs, "REPLICATION CLIENT") {
			return true
		}
	}
	return false
}

// Missing lists what r asks for that h lacks ("PRIV" for global ones,
// "SELECT ON db.table" for tables).
func (h Held) Missing(r Required) []string {
	var out []string
	for _, p := range r.Global {
		if !h.has(p, "*.*") {
			out = append(out, p)
		}
	}
	for _, t := range r.Tables {
		if !h.has("SELECT", t) {
			out = append(out, "SELECT ON "+t)
		}
	}
	return out
}
