package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/vipguard/vipguard/internal/check"
	"github.com/vipguard/vipguard/internal/config"
)

// The --nagios output follows the Monitoring Plugins development guidelines:
// one status line on stdout, "VIPGUARD STATUS - text | perfdata", whatever
// happens (also usage errors and the backstop timer), and the exit code of
// that status.

// nagiosStatus is the status a verdict reports to monitoring. Maintenance is
// planned: it is never CRITICAL, whatever keepalived is told.
func nagiosStatus(c config.Check, v check.Verdict) check.Status {
	if v.Maintenance {
		if c.NagiosMaintenance == "warning" {
			return check.Warning
		}
		return check.OK
	}
	return v.Status
}

// perfdatum is one 'label'=value[UOM];[warn];[crit];[min];[max] item, in
// seconds. A zero threshold is left empty; hasMax says whether max is known.
type perfdatum struct {
	label                      string
	value, warn, crit, min, mx time.Duration
	hasMax                     bool
}

func (p perfdatum) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "'%s'=%ss;%s;%s;%s;", p.label, seconds(p.value), optional(p.warn), optional(p.crit), seconds(p.min))
	if p.hasMax {
		b.WriteString(seconds(p.mx))
	}
	return b.String()
}

// seconds renders d in seconds in the C locale, as the guidelines require.
func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

func optional(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return seconds(d)
}

// perfdata is the check's duration (critical at the deadline) and, when
// known, the replication lag against warn_lag and max_lag.
func perfdata(c config.Check, took time.Duration, lag *time.Duration) []perfdatum {
	out := []perfdatum{{label: "time", value: took, crit: c.Timeout.Duration, mx: c.Timeout.Duration, hasMax: true}}
	if lag != nil {
		out = append(out, perfdatum{label: "lag", value: *lag, warn: c.WarnLag.Duration, crit: c.MaxLag.Duration})
	}
	return out
}

// statusLine renders the one line. The text loses what would break the
// format: a "|" would start perfdata, a line break a second line.
func statusLine(st check.Status, text string, perf []perfdatum) string {
	text = strings.Map(func(r rune) rune {
		switch {
		case r == '|':
			return '/'
		case r < ' ' || r == 0x7f:
			return ' '
		}
		return r
	}, text)
	line := "VIPGUARD " + st.String() + " - " + text
	if len(perf) > 0 {
		items := make([]string, len(perf))
		for i, p := range perf {
			items[i] = p.String()
		}
		line += " | " + strings.Join(items, " ")
	}
	return line + "\n"
}

// printNagios prints the verdict's status line and returns its status.
func printNagios(w io.Writer, c config.Check, v check.Verdict) check.Status {
	st := nagiosStatus(c, v)
	reason := v.Reason
	if v.Maintenance {
		reason += " (unfit for the VIP)"
	}
	io.WriteString(w, statusLine(st, reason, perfdata(c, v.Took, v.Lag)))
	return st
}
