// Package doctor checks a vipguard pair's setup before a failover trips on
// it: both servers (read over MySQL with the configured accounts), the
// pair as a whole, and this host (keepalived.conf, witnesses, files).
//
// Every check is a pure function over what was read — a Server, a parsed
// keepalived.conf, a file's owner and mode — returning Results, tested row
// by row; the reading is kept apart, thin, and under deadlines.
package doctor

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Level is how bad a result is.
type Level int

const (
	OK Level = iota
	// Skip: the check could not be made from here (said why); it does not
	// count towards the verdict.
	Skip
	Warn
	Fail
)

var levelNames = [...]string{"OK", "SKIP", "WARN", "FAIL"}

func (l Level) String() string { return levelNames[l] }

// MarshalText makes the level a string in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText reads a level written by MarshalText.
func (l *Level) UnmarshalText(b []byte) error {
	for i, n := range levelNames {
		if n == string(b) {
			*l = Level(i)
			return nil
		}
	}
	return fmt.Errorf("unknown level %q", b)
}

// Result is one check's outcome.
type Result struct {
	// Check names what was checked ("server_id", "keepalived.weight").
	Check string `json:"check"`
	// Node is "local", "peer", "pair" or "host".
	Node   string `json:"node"`
	Level  Level  `json:"level"`
	Detail string `json:"detail"`
	// Fix says what to do, when Level is not OK.
	Fix string `json:"fix,omitempty"`
}

func (r Result) String() string {
	s := fmt.Sprintf("%-4s  %-5s  %-26s %s", r.Level, r.Node, r.Check, r.Detail)
	if r.Fix != "" && r.Level != OK {
		s += " — fix: " + r.Fix
	}
	return s
}

// Worst is the worst level among results (Skip does not count).
func Worst(rs []Result) Level {
	w := OK
	for _, r := range rs {
		if r.Level != Skip && r.Level > w {
			w = r.Level
		}
	}
	return w
}

// Find returns the results of one check.
func Find(rs []Result, node, check string) []Result {
	var out []Result
	for _, r := range rs {
		if r.Node == node && r.Check == check {
			out = append(out, r)
		}
	}
	return out
}

// JSON renders results as a document: {"worst": ..., "results": [...]}.
func JSON(rs []Result) ([]byte, error) {
	if rs == nil {
		rs = []Result{}
	}
	return json.MarshalIndent(struct {
		Worst   Level    `json:"worst"`
		Results []Result `json:"results"`
	}{Worst(rs), rs}, "", "  ")
}

func ok(node, check, format string, a ...any) Result {
	return Result{Check: check, Node: node, Level: OK, Detail: fmt.Sprintf(format, a...)}
}

func bad(l Level, node, check, fix, format string, a ...any) Result {
	return Result{Check: check, Node: node, Level: l, Detail: fmt.Sprintf(format, a...), Fix: fix}
}

func onOff(b bool) string {
	if b {
		return "ON"
	}
	return "OFF"
}

// truthy reads a server variable's boolean value.
func truthy(v string) bool {
	switch strings.ToUpper(v) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}
