package witness

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

func ask(b *Book, ip string, from time.Time, n int, every time.Duration) {
	for i := 0; i < n; i++ {
		b.Observe(netip.MustParseAddr(ip), from.Add(time.Duration(i)*every))
	}
}

func qualified(b *Book, now time.Time) []string {
	all, _ := b.Snapshot(now)
	var out []string
	for _, ip := range Witnesses(b.rules, all) {
		out = append(out, ip.String())
	}
	return out
}

func TestBookQualifies(t *testing.T) {
	peer := netip.MustParseAddr("192.0.2.2")
	b := NewBook(DefaultRules, nil, func(ip netip.Addr) bool { return ip == peer || ip.IsLoopback() })
	ask(b, "192.0.2.20", t0, 3, time.Second)         // a proxy: every second
	ask(b, "192.0.2.30", t0, 1, 0)                   // a one-off connection
	ask(b, "192.0.2.40", t0, 5, 10*time.Millisecond) // a burst, no span
	ask(b, "127.0.0.1", t0, 9, time.Second)
	ask(b, "192.0.2.2", t0, 9, time.Second)
	ask(b, "::ffff:192.0.2.21", t0, 3, time.Second) // v4-mapped from a dual-stack listener
	if got := qualified(b, t0.Add(3*time.Second)); !reflect.DeepEqual(got, []string{"192.0.2.20", "192.0.2.21"}) {
		t.Fatalf("witnesses %q", got)
	}
}

func TestBookBounded(t *testing.T) {
	b := NewBook(Rules{Max: 2, MinAsks: 1}, nil, nil)
	ask(b, "192.0.2.20", t0, 1, 0)
	ask(b, "192.0.2.21", t0.Add(time.Second), 1, 0)
	ask(b, "192.0.2.22", t0.Add(2*time.Second), 1, 0) // evicts .20, the stalest
	if got := qualified(b, t0.Add(3*time.Second)); !reflect.DeepEqual(got, []string{"192.0.2.21", "192.0.2.22"}) {
		t.Fatalf("witnesses %q", got)
	}
}

func TestBookAgesOutOnlyWhileOthersAreHeard(t *testing.T) {
	r := Rules{Max: 8, MinAsks: 1, MaxAge: time.Hour}
	b := NewBook(r, nil, nil)
	ask(b, "192.0.2.20", t0, 1, 0)
	ask(b, "192.0.2.21", t0, 1, 0)
	// Cut off from both proxies for a day: both stay.
	if got := qualified(b, t0.Add(24*time.Hour)); len(got) != 2 {
		t.Fatalf("a node cut off forgot its witnesses: %q", got)
	}
	// A proxy replaced: the new one is heard, the old ones age out.
	ask(b, "192.0.2.22", t0.Add(25*time.Hour), 1, 0)
	if got := qualified(b, t0.Add(25*time.Hour)); !reflect.DeepEqual(got, []string{"192.0.2.22"}) {
		t.Fatalf("after replacement %q", got)
	}
}

func TestSnapshotChanged(t *testing.T) {
	b := NewBook(Rules{Max: 8, MinAsks: 2}, nil, nil)
	ask(b, "192.0.2.20", t0, 1, 0)
	if _, changed := b.Snapshot(t0); changed {
		t.Fatal("an unqualified host changed the witnesses")
	}
	ask(b, "192.0.2.20", t0.Add(time.Second), 1, 0)
	if _, changed := b.Snapshot(t0.Add(time.Second)); !changed {
		t.Fatal("a newly qualified witness is no change")
	}
	if _, changed := b.Snapshot(t0.Add(time.Second)); changed {
		t.Fatal("changed twice")
	}
}

func TestSaveAndRestore(t *testing.T) {
	b := NewBook(DefaultRules, nil, nil)
	ask(b, "192.0.2.20", t0, 3, time.Second)
	all, _ := b.Snapshot(t0.Add(3 * time.Second))
	data, err := Encode(all)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(data)
	if err != nil || len(back) != 1 || back[0].IP != all[0].IP || !back[0].LastSeen.Equal(all[0].LastSeen) ||
		!back[0].FirstSeen.Equal(all[0].FirstSeen) || back[0].Asks != 3 {
		t.Fatalf("%v %v", back, err)
	}
	// A restarted agentcheck keeps them, minus what it now excludes.
	b2 := NewBook(DefaultRules, back, func(ip netip.Addr) bool { return false })
	if got := qualified(b2, t0.Add(4*time.Second)); !reflect.DeepEqual(got, []string{"192.0.2.20"}) {
		t.Fatalf("restored %q", got)
	}
	for _, bad := range []string{"", "{}", `[{"ip":"nope"}]`, `[{"asks":1}]`} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestSelect(t *testing.T) {
	learned := []netip.Addr{netip.MustParseAddr("192.0.2.20")}
	if s := Select([]string{"192.0.2.1:22"}, learned, 9); s.Source != Configured || len(s.Addrs) != 1 || s.Addrs[0] != "192.0.2.1:22" {
		t.Errorf("configured wins: %+v", s)
	}
	if s := Select(nil, learned, 9); s.Source != FromProxies || s.Addrs[0] != "192.0.2.20:9" {
		t.Errorf("learned: %+v", s)
	}
	if s := Select(nil, nil, 9); s.Source != None || s.Addrs != nil {
		t.Errorf("none: %+v", s)
	}
}

// A saved list is asked at every check: however long the file, at most
// Max witnesses (the most recently heard), each once.
func TestWitnessesBounded(t *testing.T) {
	var saved []Learned
	for i := 0; i < 50; i++ {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		saved = append(saved, Learned{IP: ip, FirstSeen: t0, LastSeen: t0.Add(time.Duration(i) * time.Second), Asks: 9})
	}
	saved = append(saved, saved[49])
	got := Witnesses(Rules{Max: 3, MinAsks: 1}, saved)
	want := []netip.Addr{netip.MustParseAddr("192.0.2.48"), netip.MustParseAddr("192.0.2.49"), netip.MustParseAddr("192.0.2.50")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("witnesses %v, want %v", got, want)
	}
}
