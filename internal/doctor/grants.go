package doctor

import (
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
// heartbeat table when one is configured. It is the one definition of
// what the account needs: the sufficiency and the excess checks both
// measure against it.
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

// empty reports whether r asks for nothing.
func (r Required) empty() bool { return len(r.Global) == 0 && len(r.Tables) == 0 }

// String names r's privileges: "PRIV, …" for global ones, "SELECT ON
// db.table" for tables.
func (r Required) String() string {
	out := slices.Clone(r.Global)
	for _, t := range r.Tables {
		out = append(out, "SELECT ON "+t)
	}
	return strings.Join(out, ", ")
}

// grantStatements are the GRANTs that give account r.
func (r Required) grantStatements(account string) []string {
	var out []string
	if len(r.Global) > 0 {
		out = append(out, "GRANT "+strings.Join(r.Global, ", ")+" ON *.* TO "+quoteAccount(account))
	}
	for _, t := range r.Tables {
		db, tbl, _ := strings.Cut(t, ".")
		out = append(out, "GRANT SELECT ON "+quoteIdent(db)+"."+quoteIdent(tbl)+" TO "+quoteAccount(account))
	}
	return out
}

// Grant is one line of SHOW GRANTS that grants privileges on an object.
type Grant struct {
	// Privs are upper case, as SHOW GRANTS names them ("ALL PRIVILEGES"
	// included); a column privilege keeps its columns: "SELECT (`a`, `b`)".
	Privs []string
	// Kind is "" for databases and tables, else what the routine is
	// ("PROCEDURE", "FUNCTION", "PACKAGE", "PACKAGE BODY").
	Kind string
	// DB and Table, unquoted; "*" stands for every one.
	DB, Table string
	// Grantee is "user@host", a role's name, or "PUBLIC".
	Grantee     string
	GrantOption bool
}

// Held is what SHOW GRANTS says an account holds.
type Held []Grant

// ParseGrants reads SHOW GRANTS lines. Lines that grant no privilege on
// an object (roles, PROXY, SET DEFAULT ROLE) and lines it cannot read are
// skipped: the text comes from a server, and a line it does not know must
// not stop the other checks.
func ParseGrants(lines []string) Held {
	var h Held
	for _, l := range lines {
		if g, ok := parseGrant(l); ok {
			h = append(h, g)
		}
	}
	return h
}

// allPrivs reports whether privs name every privilege of their level.
func allPrivs(privs []string) bool {
	return slices.Contains(privs, "ALL PRIVILEGES") || slices.Contains(privs, "ALL")
}

// samePriv compares privilege names, knowing that MariaDB 10.5.2 renamed
// REPLICATION CLIENT to BINLOG MONITOR (and shows the new name).
func samePriv(a, b string) bool {
	canon := func(p string) string {
		if p == "REPLICATION CLIENT" {
			return "BINLOG MONITOR"
		}
		return p
	}
	return canon(a) == canon(b)
}

func containsPriv(privs []string, p string) bool {
	return slices.ContainsFunc(privs, func(q string) bool { return samePriv(p, q) })
}

// covers reports whether g applies to the table db.tbl ("*", "*" for
// the global level).
func (g Grant) covers(db, tbl string) bool {
	if g.Kind != "" {
		return false
	}
	return g.DB == "*" || g.DB == db && (g.Table == "*" || g.Table == tbl)
}

// has reports whether privilege p on obj ("*.*" or "db.table") is held,
// directly, through ALL PRIVILEGES, or on a wider object (*.*, db.*), by
// any grantee SHOW GRANTS lists (the account, PUBLIC, an active role).
func (h Held) has(p, obj string) bool {
	db, tbl := "*", "*"
	if obj != "*.*" {
		db, tbl, _ = strings.Cut(obj, ".")
	}
	for _, g := range h {
		if g.covers(db, tbl) && (containsPriv(g.Privs, p) || allPrivs(g.Privs)) {
			return true
		}
	}
	return false
}

// Missing is what r asks for that h lacks.
func (h Held) Missing(r Required) Required {
	var m Required
	for _, p := range r.Global {
		if !h.has(p, "*.*") {
			m.Global = append(m.Global, p)
		}
	}
	for _, t := range r.Tables {
		if !h.has("SELECT", t) {
			m.Tables = append(m.Tables, t)
		}
	}
	return m
}

// Privilege is one row of SHOW PRIVILEGES: what this server can grant,
// and where (Context: "Server Admin", "Tables", "Databases,Tables", …).
type Privilege struct {
	Name, Context string
}

// expand lists what ALL PRIVILEGES stands for on an object of g's kind,
// going by the server's SHOW PRIVILEGES: nil when that is unknown. GRANT
// OPTION is never part of ALL; USAGE and PROXY are not privileges on
// objects.
func expand(known []Privilege, g Grant) []string {
	if len(known) == 0 || g.Kind != "" || g.DB != "*" && g.Table == "*" {
		// Databases and routines: REVOKE ALL PRIVILEGES takes all there,
		// and vipguard needs nothing at those levels.
		return nil
	}
	var out []string
	for _, p := range known {
		name := strings.ToUpper(p.Name)
		switch {
		case name == "GRANT OPTION" || name == "USAGE" || name == "PROXY":
		case g.DB == "*":
			out = append(out, name)
		case strings.Contains(p.Context, "Tables"):
			out = append(out, name)
		}
	}
	return out
}

// Excess is what an account holds beyond what it needs, and the
// statements that take it away.
type Excess struct {
	// Held names the surplus object by object, as granted: "ALL
	// PRIVILEGES, GRANT OPTION ON *.*", "INSERT, SUPER ON *.*".
	Held []string
	// Fix: first a GRANT of each needed table privilege that only a
	// wider grant being revoked gave, so that no check fails in
	// between; then one REVOKE per object.
	Fix []string
}

// Excess compares what h grants account ("user@host", as CURRENT_USER()
// says) with r. Only the account's own grants count: PUBLIC's and a
// role's privileges are not the account's to revoke. known is SHOW
// PRIVILEGES, to spell out which of ALL PRIVILEGES to revoke; without
// it, the fix revokes ALL PRIVILEGES and grants the needed ones again
// (the account holds nothing for a moment). An unknown account ("") is
// the first user@host SHOW GRANTS names.
func (h Held) Excess(account string, r Required, known []Privilege) Excess {
	if account == "" {
		// The statements need a name: the first account SHOW GRANTS names.
		for _, g := range h {
			if sameAccount(g.Grantee, "") {
				account = g.Grantee
				break
			}
		}
	}
	var x Excess
	var revokes, regrants []string
	keeps := map[string]bool{} // required tables whose SELECT the account keeps at table level
	loses := map[string]bool{} // required tables whose SELECT a revoke takes
	for _, g := range h.own(account) {
		var need []string
		switch {
		case g.Kind != "":
		case g.DB == "*":
			need = r.Global
		case g.Table != "*" && slices.Contains(r.Tables, g.DB+"."+g.Table):
			need = []string{"SELECT"}
		}
		all := allPrivs(g.Privs)
		var surplus []string // what to revoke, by name
		for _, p := range g.Privs {
			if p != "USAGE" && p != "ALL" && p != "ALL PRIVILEGES" && !containsPriv(need, p) {
				surplus = append(surplus, p)
			}
		}
		revokeAll := false
		if all {
			if len(need) == 0 {
				revokeAll = true
			} else if ex := expand(known, g); ex != nil {
				for _, p := range ex {
					if !containsPriv(need, p) && !slices.Contains(surplus, p) {
						surplus = append(surplus, p)
					}
				}
			} else {
				revokeAll = true
				var re Required
				if g.DB == "*" {
					re.Global = need
				} else {
					re.Tables = []string{g.DB + "." + g.Table}
				}
				regrants = append(regrants, re.grantStatements(account)...)
			}
		}
		for _, t := range r.Tables {
			db, tbl, _ := strings.Cut(t, ".")
			if !g.covers(db, tbl) || !all && !slices.Contains(g.Privs, "SELECT") {
				continue
			}
			switch {
			case g.DB != db || g.Table != tbl:
				loses[t] = true // SELECT on a wider object is surplus
			case !revokeAll:
				keeps[t] = true
			}
		}
		if len(surplus) == 0 && !revokeAll && !g.GrantOption {
			continue
		}
		obj := g.object()
		named := surplus
		if all {
			named = []string{"ALL PRIVILEGES"}
		}
		if g.GrantOption {
			named = append(slices.Clip(named), "GRANT OPTION")
		}
		x.Held = append(x.Held, strings.Join(named, ", ")+" ON "+obj)
		from := " ON " + obj + " FROM " + quoteAccount(account)
		switch {
		case revokeAll:
			revokes = append(revokes, "REVOKE ALL PRIVILEGES"+from)
			if g.GrantOption {
				// ALL PRIVILEGES and GRANT OPTION do not go in one list.
				revokes = append(revokes, "REVOKE GRANT OPTION"+from)
			}
		default:
			if g.GrantOption {
				surplus = append(surplus, "GRANT OPTION")
			}
			revokes = append(revokes, "REVOKE "+strings.Join(surplus, ", ")+from)
		}
	}
	if len(revokes) == 0 {
		return Excess{}
	}
	for _, t := range r.Tables {
		if loses[t] && !keeps[t] {
			x.Fix = append(x.Fix, Required{Tables: []string{t}}.grantStatements(account)...)
		}
	}
	x.Fix = append(x.Fix, revokes...)
	x.Fix = append(x.Fix, regrants...)
	return x
}

// own is the account's grants, merged into one per object, in SHOW
// GRANTS order (MySQL 8 prints static and dynamic privileges on *.* in
// two lines).
func (h Held) own(account string) []Grant {
	var out []Grant
	for _, g := range h {
		if !sameAccount(g.Grantee, account) {
			continue
		}
		i := slices.IndexFunc(out, func(o Grant) bool { return o.Kind == g.Kind && o.DB == g.DB && o.Table == g.Table })
		if i < 0 {
			g.Privs = slices.Clone(g.Privs)
			out = append(out, g)
			continue
		}
		for _, p := range g.Privs {
			if !slices.Contains(out[i].Privs, p) {
				out[i].Privs = append(out[i].Privs, p)
			}
		}
		out[i].GrantOption = out[i].GrantOption || g.GrantOption
	}
	return out
}

// object is g's object as GRANT and REVOKE take it.
func (g Grant) object() string {
	s := "*"
	if g.DB != "*" {
		s = quoteIdent(g.DB)
	}
	if g.Table == "*" {
		s += ".*"
	} else {
		s += "." + quoteIdent(g.Table)
	}
	if g.Kind != "" {
		s = g.Kind + " " + s
	}
	return s
}

// String is g as a GRANT statement.
func (g Grant) String() string {
	s := "GRANT " + strings.Join(g.Privs, ", ") + " ON " + g.object() + " TO " + quoteAccount(g.Grantee)
	if g.GrantOption {
		s += " WITH GRANT OPTION"
	}
	return s
}

// sameAccount compares a SHOW GRANTS grantee with CURRENT_USER() (both
// "user@host"; host names compare without case). An unknown account
// matches every user@host grantee, never a role or PUBLIC.
func sameAccount(grantee, account string) bool {
	gu, gh, ok := cutLast(grantee, "@")
	if !ok {
		return false
	}
	if account == "" {
		return true
	}
	au, ah, _ := cutLast(account, "@")
	return gu == au && strings.EqualFold(gh, ah)
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// quoteAccount is "user@host" as SQL names it: `user`@`host`. PUBLIC
// and role names (no host) stay one name.
func quoteAccount(a string) string {
	if a == "PUBLIC" {
		return a
	}
	if u, h, ok := cutLast(a, "@"); ok {
		return quoteIdent(u) + "@" + quoteIdent(h)
	}
	return quoteIdent(a)
}

// quoteIdent quotes a name with backticks, which mean a name whatever
// sql_mode says.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// token is one lexical piece of a SHOW GRANTS line.
type token struct {
	// kind: 'w' a bare word, 'q' a `quoted` name, 's' a 'string' or
	// "string", else the punctuation character itself.
	kind byte
	text string // unquoted for 'q' and 's'
}

const punct = "(),.@*;="

// tokenize splits a line; ok is false for an unterminated quote.
func tokenize(s string) (toks []token, ok bool) {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '`' || c == '\'' || c == '"':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, false
				}
				if s[j] == c {
					if j+1 < len(s) && s[j+1] == c { // doubled quote
						b.WriteByte(c)
						j += 2
						continue
					}
					break
				}
				if s[j] == '\\' && c != '`' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
				j++
			}
			kind := byte('s')
			if c == '`' {
				kind = 'q'
			}
			toks = append(toks, token{kind, b.String()})
			i = j + 1
		case strings.IndexByte(punct, c) >= 0:
			toks = append(toks, token{c, string(c)})
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\n\r`'\""+punct, s[j]) < 0 {
				j++
			}
			toks = append(toks, token{'w', s[i:j]})
			i = j
		}
	}
	return toks, true
}

func (t token) is(word string) bool { return t.kind == 'w' && strings.EqualFold(t.text, word) }

// name reports whether t can be a database, table, column or account name.
func (t token) name() bool { return t.kind == 'w' || t.kind == 'q' || t.kind == 's' }

// parseGrant reads "GRANT privs ON [kind] db.table TO grantee [options]".
func parseGrant(line string) (Grant, bool) {
	toks, ok := tokenize(line)
	if !ok || len(toks) == 0 || !toks[0].is("GRANT") {
		return Grant{}, false
	}
	var g Grant
	i := 1
	at := func(k int) token {
		if k < len(toks) {
			return toks[k]
		}
		return token{}
	}
	// Privileges: words, each optionally with a column list, separated
	// by commas, up to ON.
	for {
		var words []string
		for at(i).kind == 'w' && !at(i).is("ON") {
			words = append(words, strings.ToUpper(at(i).text))
			i++
		}
		if len(words) == 0 {
			return Grant{}, false // a role grant (`role` TO …) or garbage
		}
		p := strings.Join(words, " ")
		if at(i).kind == '(' {
			i++
			var cols []string
			for {
				if !at(i).name() {
					return Grant{}, false
				}
				cols = append(cols, quoteIdent(at(i).text))
				i++
				if at(i).kind == ')' {
					i++
					break
				}
				if at(i).kind != ',' {
					return Grant{}, false
				}
				i++
			}
			p += " (" + strings.Join(cols, ", ") + ")"
		}
		g.Privs = append(g.Privs, p)
		if at(i).is("ON") {
			i++
			break
		}
		if at(i).kind != ',' {
			return Grant{}, false
		}
		i++
	}
	if slices.Contains(g.Privs, "PROXY") {
		return Grant{}, false // PROXY ON an account, not an object
	}
	// The object: [kind] db.table, each part a name or *.
	for _, k := range []string{"TABLE", "FUNCTION", "PROCEDURE", "PACKAGE"} {
		if at(i).is(k) && at(i+1).kind != '.' {
			g.Kind = k
			i++
			if k == "PACKAGE" && at(i).is("BODY") && at(i+1).kind != '.' {
				g.Kind = "PACKAGE BODY"
				i++
			}
			break
		}
	}
	if g.Kind == "TABLE" {
		g.Kind = "" // the default object type, said aloud
	}
	part := func() (string, bool) {
		t := at(i)
		if t.kind == '*' || t.kind == 'w' || t.kind == 'q' {
			i++
			return t.text, true
		}
		return "", false
	}
	var okDB, okTable bool
	g.DB, okDB = part()
	if !okDB || at(i).kind != '.' {
		return Grant{}, false // a bare name is relative to a default database
	}
	i++
	if g.Table, okTable = part(); !okTable || g.DB == "*" && g.Table != "*" {
		return Grant{}, false
	}
	if !at(i).is("TO") {
		return Grant{}, false
	}
	i++
	// The grantee: user@host, a role, or PUBLIC.
	if !at(i).name() {
		return Grant{}, false
	}
	g.Grantee = at(i).text
	i++
	if at(i).kind == '@' {
		if !at(i + 1).name() {
			return Grant{}, false
		}
		g.Grantee += "@" + at(i+1).text
		i += 2
	}
	for ; i+1 < len(toks); i++ {
		if toks[i].is("GRANT") && toks[i+1].is("OPTION") {
			g.GrantOption = true
		}
	}
	return g, true
}
