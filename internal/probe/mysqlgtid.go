package probe

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MySQLGTIDSet is a parsed MySQL GTID set: for each source (server_uuid,
// or server_uuid:tag on 8.3+), the transaction numbers as sorted, merged
// closed intervals.
type MySQLGTIDSet map[string][][2]uint64

// ParseMySQLGTIDSet parses what @@gtid_executed and the Retrieved/Executed
// columns print: "uuid:1-5:7,uuid2:1-3", possibly split over lines after
// the commas, with optional tags ("uuid:tag:1-5").
func ParseMySQLGTIDSet(s string) (MySQLGTIDSet, error) {
	set := MySQLGTIDSet{}
	for _, part := range strings.Split(s, ",") {
		part = strings.Join(strings.Fields(part), "")
		if part == "" {
			continue
		}
		fields := strings.Split(part, ":")
		if len(fields) < 2 || !validUUID(fields[0]) {
			return nil, fmt.Errorf("bad GTID set element %q", part)
		}
		key := strings.ToLower(fields[0])
		for _, f := range fields[1:] {
			lo, hi, isRange := strings.Cut(f, "-")
			a, err := strconv.ParseUint(lo, 10, 63)
			if err != nil {
				if isRange || !validTag(f) {
					return nil, fmt.Errorf("bad GTID set element %q", part)
				}
				// A tag: the intervals after it belong to uuid:tag.
				key = strings.ToLower(fields[0]) + ":" + strings.ToLower(f)
				continue
			}
			b := a
			if isRange {
				if b, err = strconv.ParseUint(hi, 10, 63); err != nil || b < a {
					return nil, fmt.Errorf("bad GTID interval %q in %q", f, part)
				}
			}
			if a == 0 {
				return nil, fmt.Errorf("bad GTID interval %q in %q", f, part)
			}
			set[key] = append(set[key], [2]uint64{a, b})
		}
	}
	for k, iv := range set {
		set[k] = merge(iv)
	}
	return set, nil
}

// validUUID accepts the 8-4-4-4-12 hex form server_uuid is printed in.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// validTag follows the server's rule: a letter or underscore, then up to 31
// letters, digits or underscores.
func validTag(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i, c := range s {
		letter := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func merge(iv [][2]uint64) [][2]uint64 {
	sort.Slice(iv, func(i, j int) bool { return iv[i][0] < iv[j][0] })
	out := iv[:0]
	for _, x := range iv {
		if n := len(out); n > 0 && x[0] <= out[n-1][1]+1 {
			if x[1] > out[n-1][1] {
				out[n-1][1] = x[1]
			}
			continue
		}
		out = append(out, x)
	}
	return out
}

// Missing returns the part of s that other lacks, in GTID set notation
// ("" when other contains all of s).
func (s MySQLGTIDSet) Missing(other MySQLGTIDSet) string {
	var parts []string
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var gaps []string
		for _, x := range s[k] {
			for _, g := range subtract(x, other[k]) {
				if g[0] == g[1] {
					gaps = append(gaps, strconv.FormatUint(g[0], 10))
				} else {
					gaps = append(gaps, fmt.Sprintf("%d-%d", g[0], g[1]))
				}
			}
		}
		if len(gaps) > 0 {
			parts = append(parts, k+":"+strings.Join(gaps, ":"))
		}
	}
	return strings.Join(parts, ",")
}

// subtract returns the parts of x not covered by the sorted, merged have.
func subtract(x [2]uint64, have [][2]uint64) [][2]uint64 {
	var out [][2]uint64
	lo := x[0]
	for _, h := range have {
		if h[1] < lo {
			continue
		}
		if h[0] > x[1] {
			break
		}
		if h[0] > lo {
			out = append(out, [2]uint64{lo, h[0] - 1})
		}
		if h[1] >= x[1] {
			return out
		}
		lo = h[1] + 1
	}
	return append(out, [2]uint64{lo, x[1]})
}
