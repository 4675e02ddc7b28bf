// Package witness decides which hosts outside the pair a node asks before
// it holds the VIP or opens writes: "the peer is dead" and "I am cut off"
// look the same from inside the pair, and only a host on the clients' side
// tells them apart.
//
// Witnesses are configured ([check] witnesses) or, when none are, learned:
// the HAProxy hosts that send agentcheck their agent-check every second
// are exactly the hosts whose view matters, since clients reach the
// database through them. agentcheck records who asks (a Book), keeps the
// list in the state directory, and mysqlcheck and notify read it back
// (Select). A learned witness is asked like a configured one, on
// learned_witness_port.
package witness

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vipguard/vipguard/internal/state"
)

// Learned is one host that asked agentcheck.
type Learned struct {
	IP        netip.Addr `json:"ip"`
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  time.Time  `json:"last_seen"`
	Asks      uint64     `json:"asks"`
}

// Rules bound what a Book learns.
type Rules struct {
	// Max is how many hosts are kept; the one heard from least recently
	// makes room for a new one.
	Max int
	// MinAsks and MinSpan make a host a witness only once it has asked
	// that often over that long: a proxy checks every second or two, a
	// port scan or a one-off curl does not.
	MinAsks uint64
	MinSpan time.Duration
	// MaxAge drops a host not heard from for that long — but only while
	// another witness was heard from within MaxAge. A node cut off from
	// every proxy hears from none of them: it must keep them, or its
	// witness check would go from "isolated" to "no witness" and let it
	// hold the VIP again.
	MaxAge time.Duration
}

// DefaultRules are what agentcheck uses.
var DefaultRules = Rules{Max: 8, MinAsks: 3, MinSpan: 2 * time.Second, MaxAge: time.Hour}

// Book records the hosts that ask, safe for concurrent use.
type Book struct {
	rules   Rules
	exclude func(netip.Addr) bool
	mu      sync.Mutex
	hosts   map[netip.Addr]*Learned
	// changed is set when the set of qualified witnesses changed, or a
	// LastSeen moved, since the last Snapshot.
	changed bool
}

// NewBook starts a book from what was saved; exclude says which sources
// are never witnesses (the caller's choice: loopback, the node's own
// addresses, the peer).
func NewBook(r Rules, saved []Learned, exclude func(netip.Addr) bool) *Book {
	b := &Book{rules: r, exclude: exclude, hosts: map[netip.Addr]*Learned{}}
	for _, l := range saved {
		if l.IP.IsValid() && !b.excluded(l.IP) {
			l := l
			b.hosts[l.IP] = &l
		}
	}
	for len(b.hosts) > r.Max {
		b.evictStalest()
	}
	return b
}

func (b *Book) excluded(ip netip.Addr) bool {
	return ip.IsUnspecified() || ip.IsMulticast() || (b.exclude != nil && b.exclude(ip))
}

// Observe records one ask from ip at now.
func (b *Book) Observe(ip netip.Addr, now time.Time) {
	ip = ip.Unmap()
	if !ip.IsValid() || b.excluded(ip) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.hosts[ip]
	if h == nil {
		if len(b.hosts) >= b.rules.Max {
			b.evictStalest()
		}
		h = &Learned{IP: ip, FirstSeen: now}
		b.hosts[ip] = h
	}
	was := b.qualified(h)
	h.LastSeen, h.Asks = now, h.Asks+1
	if b.qualified(h) != was {
		b.changed = true
	}
}

func (b *Book) qualified(h *Learned) bool {
	return h.Asks >= b.rules.MinAsks && h.LastSeen.Sub(h.FirstSeen) >= b.rules.MinSpan
}

func (b *Book) evictStalest() {
	var stalest *Learned
	for _, h := range b.hosts {
		if stalest == nil || h.LastSeen.Before(stalest.LastSeen) {
			stalest = h
		}
	}
	if stalest != nil {
		delete(b.hosts, stalest.IP)
		b.changed = true
	}
}

// Snapshot ages out hosts gone for MaxAge (never the last ones heard
// from, see Rules.MaxAge) and returns every host, qualified or not, to be
// saved; changed says whether the qualified witnesses changed since the
// previous Snapshot.
func (b *Book) Snapshot(now time.Time) (all []Learned, changed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fresh := false
	for _, h := range b.hosts {
		fresh = fresh || now.Sub(h.LastSeen) < b.rules.MaxAge
	}
	if fresh {
		for ip, h := range b.hosts {
			if now.Sub(h.LastSeen) >= b.rules.MaxAge {
				delete(b.hosts, ip)
				b.changed = b.changed || b.qualified(h)
			}
		}
	}
	for _, h := range b.hosts {
		all = append(all, *h)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].IP.Less(all[j].IP) })
	changed, b.changed = b.changed, false
	return all, changed
}

// Witnesses returns the qualified hosts of a saved list: at most r.Max,
// the most recently heard, whatever the file holds (each is asked at
// every check).
func Witnesses(r Rules, saved []Learned) []netip.Addr {
	b := Book{rules: r}
	var q []Learned
	for i := range saved {
		if b.qualified(&saved[i]) {
			q = append(q, saved[i])
		}
	}
	sort.SliceStable(q, func(i, j int) bool { return q[i].LastSeen.After(q[j].LastSeen) })
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	for _, l := range q {
		if r.Max > 0 && len(out) == r.Max {
			break
		}
		if !seen[l.IP] {
			seen[l.IP] = true
			out = append(out, l.IP)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// Encode and Decode are the file format in the state directory.
func Encode(all []Learned) ([]byte, error) { return json.MarshalIndent(all, "", "  ") }

// Decode reads a saved list; anything odd in it is an error, never a
// witness.
func Decode(data []byte) ([]Learned, error) {
	var all []Learned
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, fmt.Errorf("learned witnesses: %w", err)
	}
	for _, l := range all {
		if !l.IP.IsValid() {
			return nil, fmt.Errorf("learned witnesses: an entry has no valid ip")
		}
	}
	return all, nil
}

// Source says where a node's witnesses come from.
type Source int

const (
	// None: no witness at all. The node cannot tell a dead peer from
	// being cut off itself; it says so loudly, and holds on regardless
	// (refusing would leave a fresh install without a writer).
	None Source = iota
	// Configured: [check] witnesses.
	Configured
	// FromProxies: learned from the proxies that asked agentcheck.
	FromProxies
)

func (s Source) String() string {
	switch s {
	case Configured:
		return "configured"
	case FromProxies:
		return "learned"
	}
	return "none"
}

// Set is the witnesses a node asks, "ip:port" each.
type Set struct {
	Addrs  []string
	Source Source
}

// Select picks the witnesses: the configured ones when there are any (the
// DBA knows best), else the learned hosts on port.
func Select(configured []string, learned []netip.Addr, port int) Set {
	if len(configured) > 0 {
		return Set{Addrs: configured, Source: Configured}
	}
	if len(learned) == 0 {
		return Set{}
	}
	s := Set{Source: FromProxies}
	for _, ip := range learned {
		s.Addrs = append(s.Addrs, netip.AddrPortFrom(ip, uint16(port)).String())
	}
	return s
}

// Describe names the witnesses, or says there are none.
func (s Set) Describe() string {
	if len(s.Addrs) == 0 {
		return NoWitnessWarning
	}
	return s.Source.String() + " " + strings.Join(s.Addrs, ", ")
}

// NoWitnessWarning is what every binary says when a node has no witness.
const NoWitnessWarning = "no witness: this node cannot tell a dead peer from being cut off itself " +
	"(set [check] witnesses, or let HAProxy's agent-check reach agentcheck so the proxies are learned)"

// Load reads the learned witnesses saved in a state directory: none when
// nothing was saved yet. A file that cannot be read or understood is an
// error; callers treat that as "witnesses unknown", never as "no witness".
func Load(dir state.Dir, r Rules) ([]netip.Addr, error) {
	data, err := dir.LearnedWitnesses()
	if err != nil || data == nil {
		return nil, err
	}
	all, err := Decode(data)
	if err != nil {
		return nil, err
	}
	return Witnesses(r, all), nil
}
