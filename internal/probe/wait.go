package probe

// Catch-up: deciding whether a server has applied a target position, and
// waiting for it in short, bounded steps. The caller loops over these steps
// under its own deadline, so a wait that stalls short of its target (the
// SQL thread stopped, a wait function that never returns) costs one step,
// never the promotion.

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MariaDBGTID is one domain-server-seq triple.
type MariaDBGTID struct {
	Domain, Server uint32
	Seq            uint64
}

func (g MariaDBGTID) String() string {
	return fmt.Sprintf("%d-%d-%d", g.Domain, g.Server, g.Seq)
}

// ParseMariaDBGTIDList parses "0-1-100,1-2-5" (spaces and newlines allowed).
func ParseMariaDBGTIDList(s string) ([]MariaDBGTID, error) {
	var out []MariaDBGTID
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p := strings.Split(f, "-")
		if len(p) != 3 {
			return nil, fmt.Errorf("bad GTID %q", f)
		}
		d, err1 := strconv.ParseUint(p[0], 10, 32)
		sv, err2 := strconv.ParseUint(p[1], 10, 32)
		seq, err3 := strconv.ParseUint(p[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("bad GTID %q", f)
		}
		out = append(out, MariaDBGTID{uint32(d), uint32(sv), seq})
	}
	return out, nil
}

func formatMariaDBGTIDs(gs []MariaDBGTID) string {
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = g.String()
	}
	return strings.Join(parts, ",")
}

// OwnMariaDBGTIDs keeps the entries of a gtid_binlog_state written by
// serverID; "" when the state cannot be parsed (then nothing is trusted to
// be stable and the caller compares the whole position).
func OwnMariaDBGTIDs(state string, serverID uint32) string {
	gs, err := ParseMariaDBGTIDList(state)
	if err != nil {
		return ""
	}
	var own []MariaDBGTID
	for _, g := range gs {
		if g.Server == serverID {
			own = append(own, g)
		}
	}
	return formatMariaDBGTIDs(own)
}

// ForeignMariaDBGTIDs keeps the entries not written by serverID: what that
// server can only get by replication, so what MASTER_GTID_WAIT (which
// watches gtid_slave_pos) can wait for.
func ForeignMariaDBGTIDs(list string, serverID uint32) (string, error) {
	gs, err := ParseMariaDBGTIDList(list)
	if err != nil {
		return "", err
	}
	var out []MariaDBGTID
	for _, g := range gs {
		if g.Server != serverID {
			out = append(out, g)
		}
	}
	return formatMariaDBGTIDs(out), nil
}

// MariaDBCovers reports whether the position have (gtid_current_pos) has
// reached want in every domain of want, and lists the domains still behind.
func MariaDBCovers(have, want string) (bool, []string, error) {
	h, err := ParseMariaDBGTIDList(have)
	if err != nil {
		return false, nil, err
	}
	w, err := ParseMariaDBGTIDList(want)
	if err != nil {
		return false, nil, err
	}
	hs := map[uint32]uint64{}
	for _, g := range h {
		if g.Seq > hs[g.Domain] {
			hs[g.Domain] = g.Seq
		}
	}
	var behind []string
	for _, g := range w {
		if hs[g.Domain] < g.Seq {
			behind = append(behind, fmt.Sprintf("domain %d at %d of %d", g.Domain, hs[g.Domain], g.Seq))
		}
	}
	sort.Strings(behind)
	return len(behind) == 0, behind, nil
}

// OwnMySQLGTIDs keeps the server_uuid part of a MySQL gtid_executed set.
func OwnMySQLGTIDs(executed, uuid string) string {
	if uuid == "" {
		return ""
	}
	for _, part := range strings.Split(executed, ",") {
		part = strings.TrimSpace(part)
		if strings.HasPrefix(strings.ToLower(part), strings.ToLower(uuid)+":") {
			return part
		}
	}
	return ""
}

// Applied reports whether this server has applied the GTID position want
// (MariaDB gtid_binlog_pos or MySQL gtid_executed of the old primary), and
// describes what is missing.
func (a *Admin) Applied(ctx context.Context, want string) (bool, string, error) {
	if a.V.Flavor == MariaDB {
		var have string
		if err := a.row(ctx, 0, appliedGTIDQuery(a.V), nil, &have); err != nil {
			return false, "", err
		}
		ok, behind, err := MariaDBCovers(have, want)
		if err != nil {
			return false, "", err
		}
		return ok, strings.Join(behind, ", "), nil
	}
	var sub sql.NullInt64
	if err := a.row(ctx, 0, gtidSubsetQuery, []any{want}, &sub); err != nil {
		return false, "", err
	}
	if !sub.Valid {
		return false, "", fmt.Errorf("GTID_SUBSET returned NULL for %q", want)
	}
	if sub.Int64 == 1 {
		return true, "", nil
	}
	return false, "gtid_executed does not contain " + want, nil
}

// WaitGTID blocks at most step for the GTID position want, with the
// dialect's wait function; it reports whether want was reached. On MariaDB
// give it only the GTIDs this server receives by replication (see
// ForeignMariaDBGTIDs).
func (a *Admin) WaitGTID(ctx context.Context, want string, step time.Duration) (bool, error) {
	if want == "" {
		return true, nil
	}
	q := gtidWaitQuery(a.V)
	var res sql.NullInt64
	secs := stepSeconds(a.V, step)
	if err := a.row(ctx, step+2*time.Second, q, []any{want, secs}, &res); err != nil {
		return false, err
	}
	return gtidWaitDone(a.V, res.Valid, res.Int64)
}

// WaitPos blocks at most step until the SQL thread has executed the
// source's binlog up to file:pos; reached, not yet, or an error (NULL: the
// SQL thread is not running).
func (a *Admin) WaitPos(ctx context.Context, file string, pos uint64, step time.Duration) (bool, error) {
	q := posWaitQuery(a.V)
	var res sql.NullInt64
	secs := stepSeconds(a.V, step)
	if err := a.row(ctx, step+2*time.Second, q, []any{file, pos, secs}, &res); err != nil {
		return false, err
	}
	return posWaitDone(res.Valid, res.Int64)
}

// stepSeconds turns a wait step into the function's timeout argument.
// MariaDB takes fractions; MySQL's timeouts are whole seconds (minimum 1).
func stepSeconds(v Version, d time.Duration) any {
	if v.Flavor == MariaDB {
		return d.Seconds()
	}
	s := int64(d / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}
