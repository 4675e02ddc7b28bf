package fence

import (
	"fmt"
	"strconv"
	"strings"
)

// Event is one keepalived state change.
type Event struct {
	// Type is INSTANCE or GROUP.
	Type string
	// Name is the VRRP instance or sync group name.
	Name string
	// State is MASTER, BACKUP, FAULT, STOP or DELETED.
	State    string
	Priority int
}

func (e Event) String() string {
	return fmt.Sprintf("%s %q %s %d", e.Type, e.Name, e.State, e.Priority)
}

// Action says what an event asks of this node.
type Action int

const (
	Ignore  Action = iota // unknown state: change nothing
	Fence                 // stop writes, hand over
	Promote               // take writes
)

// Action maps the keepalived state to what notify does.
func (e Event) Action() Action {
	switch e.State {
	case "MASTER":
		return Promote
	case "BACKUP", "FAULT", "STOP", "DELETED":
		return Fence
	}
	return Ignore
}

// ParseArgs reads keepalived's generic notify arguments:
// INSTANCE|GROUP NAME STATE PRIORITY (priority may be missing).
func ParseArgs(args []string) (Event, error) {
	if len(args) < 3 || len(args) > 4 {
		return Event{}, fmt.Errorf("want INSTANCE|GROUP NAME STATE [PRIORITY], got %d arguments", len(args))
	}
	ev := Event{Type: strings.ToUpper(args[0]), Name: args[1], State: strings.ToUpper(args[2])}
	if ev.Type != "INSTANCE" && ev.Type != "GROUP" {
		return Event{}, fmt.Errorf("first argument %q must be INSTANCE or GROUP", args[0])
	}
	if len(args) == 4 {
		p, err := strconv.Atoi(args[3])
		if err != nil || p < 0 || p > 255 {
			return Event{}, fmt.Errorf("priority %q is not a number from 0 to 255", args[3])
		}
		ev.Priority = p
	}
	return ev, nil
}

// ParseFIFOLine reads one notify_fifo line: `INSTANCE "VI_1" MASTER 100`.
// The name is quoted and may contain spaces. ok is false for lines that are
// not VRRP instance or group events (keepalived also writes LVS lines).
func ParseFIFOLine(line string) (ev Event, ok bool, err error) {
	line = strings.TrimSpace(line)
	typ, rest, found := strings.Cut(line, " ")
	if !found {
		return Event{}, false, nil
	}
	typ = strings.ToUpper(typ)
	if typ != "INSTANCE" && typ != "GROUP" {
		return Event{}, false, nil
	}
	rest = strings.TrimSpace(rest)
	var name string
	if strings.HasPrefix(rest, `"`) {
		end := strings.Index(rest[1:], `"`)
		if end < 0 {
			return Event{}, false, fmt.Errorf("unterminated name in %q", line)
		}
		name, rest = rest[1:1+end], strings.TrimSpace(rest[2+end:])
	} else {
		name, rest, _ = strings.Cut(rest, " ")
	}
	f := strings.Fields(rest)
	if name == "" || len(f) < 1 || len(f) > 2 {
		return Event{}, false, fmt.Errorf("cannot read %q", line)
	}
	args := append([]string{typ, name}, f...)
	ev, err = ParseArgs(args)
	if err != nil {
		return Event{}, false, fmt.Errorf("cannot read %q: %w", line, err)
	}
	return ev, true, nil
}
