package tcpreset

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// Recorded from /proc/net/tcp and /proc/net/tcp6 on Linux 6.x.
const procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21512 1 0000000000000000 100 0 0 10 0
   1: 0A0200C0:0CEA 1402000A:D1F2 01 00000000:00000000 00:00000000 00000000   104        0 33817 1 0000000000000000 20 4 30 10 -1
   2: 0A0200C0:0CEA 1502000A:C350 04 00000001:00000000 01:00000014 00000003   104        0 0 1 0000000000000000 20 4 30 10 -1
`

const procTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0CEA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   104        0 21000 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000A0200C0:0CEA 0000000000000000FFFF00001602000A:9C40 01 00000000:00000000 00:00000000 00000000   104        0 21001 1 0000000000000000 20 4 30 10 -1
   2: B80D0120000000000000000001000000:0CEA B80D0120000000000000000002000000:A000 01 00000000:00000000 00:00000000 00000000   104        0 21002 1 0000000000000000 20 4 30 10 -1
`

func TestParseProcNetTCP(t *testing.T) {
	conns, err := ParseProcNetTCP([]byte(procTCP))
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 3 {
		t.Fatalf("%d conns", len(conns))
	}
	want := Conn{Local: netip.MustParseAddrPort("192.0.2.10:3306"), Remote: netip.MustParseAddrPort("10.0.2.20:53746"), State: 1}
	if conns[1] != want {
		t.Fatalf("got %+v, want %+v", conns[1], want)
	}
	if conns[2].State != 4 || conns[0].Local != netip.MustParseAddrPort("127.0.0.1:3306") {
		t.Fatalf("got %+v", conns)
	}
	conns6, err := ParseProcNetTCP([]byte(procTCP6))
	if err != nil {
		t.Fatal(err)
	}
	// v4-mapped entries are read as IPv4, so a v4 VIP finds them.
	if conns6[1].Local != netip.MustParseAddrPort("192.0.2.10:3306") || conns6[1].Remote != netip.MustParseAddrPort("10.0.2.22:40000") {
		t.Fatalf("v4-mapped: %+v", conns6[1])
	}
	if conns6[2].Local != netip.MustParseAddrPort("[2001:db8::1]:3306") {
		t.Fatalf("v6: %+v", conns6[2])
	}
	for _, bad := range []string{"  0: 0100007F:0CEA", "  0: 0100007G:0CEA 00000000:0000 01", "  0: 0100007F:0CEA 00000000:0000 XY", "  0: 01007F:0CEA 00000000:0000 01"} {
		if _, err := ParseProcNetTCP([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add([]byte(procTCP))
	f.Add([]byte(procTCP6))
	f.Add([]byte("  0: 0100007F:0CEA 00000000:0000 0A"))
	f.Fuzz(func(t *testing.T, data []byte) {
		conns, err := ParseProcNetTCP(data)
		if err != nil {
			return
		}
		for _, c := range conns {
			if !c.Local.IsValid() || !c.Remote.IsValid() {
				t.Fatalf("invalid address accepted: %+v", c)
			}
		}
	})
}

// sum16 verifies an Internet checksum: summing the covered bytes, checksum
// included, gives 0xffff.
func sum16(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

func TestSegment(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.10:3306")
	dst := netip.MustParseAddrPort("192.0.2.20:53746")
	p := Segment(src, dst, 0xdeadbeef, 0x01020304)
	if len(p) != 40 || p[0] != 0x45 || p[9] != 6 {
		t.Fatalf("bad IP header % x", p[:20])
	}
	if sum16(p[:20], 0) != 0xffff {
		t.Fatal("bad IP header checksum")
	}
	if netip.AddrFrom4([4]byte(p[12:16])) != src.Addr() || netip.AddrFrom4([4]byte(p[16:20])) != dst.Addr() {
		t.Fatal("addresses")
	}
	tcp := p[20:]
	if binary.BigEndian.Uint16(tcp[0:]) != 3306 || binary.BigEndian.Uint16(tcp[2:]) != 53746 ||
		binary.BigEndian.Uint32(tcp[4:]) != 0xdeadbeef || binary.BigEndian.Uint32(tcp[8:]) != 0x01020304 {
		t.Fatalf("bad TCP header % x", tcp)
	}
	if tcp[13] != 0x10 || tcp[12]>>4 != 5 {
		t.Fatalf("flags/offset % x", tcp[12:14])
	}
	if sum16(tcp, pseudoSum(src.Addr().As4(), dst.Addr().As4(), 20)) != 0xffff {
		t.Fatal("bad TCP checksum")
	}
	// A known vector: any change of a header byte must change the sum.
	q := Segment(src, dst, 0xdeadbeee, 0x01020304)
	if binary.BigEndian.Uint16(q[36:]) == binary.BigEndian.Uint16(p[36:]) {
		t.Fatal("checksum does not depend on the sequence number")
	}
}
