// Package tcpreset ends the TCP connections clients still hold to the VIP on
// a node that just lost it (after a failover, clients stay ESTABLISHED to a node
// that can no longer answer them, until their next write times out).
//
// The node cannot send from the VIP any more through normal sockets, so for
// each connection read from /proc/net/tcp it sends one TCP segment from
// VIP:port to the client through a raw IPv4 socket, with an out-of-window
// sequence number. The client answers with a challenge ACK (RFC 5961); that
// ACK reaches the new VIP holder, whose kernel answers with an exact RST,
// and the client closes. Then the local sockets recorded at the start are
// destroyed (SOCK_DESTROY, by exact 4-tuple) so a VIP coming back finds no
// zombie sessions. The raw socket needs CAP_NET_RAW; without it Reset says so
// and only closes the local sockets.
//
// Nothing is reset while the kernel still treats the VIP as a local address,
// or when it cannot be asked: those sessions may be live.
package tcpreset

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Conn is one TCP connection from the socket table.
type Conn struct {
	Local, Remote netip.AddrPort
	State         uint8 // kernel TCP state number (1 = ESTABLISHED)
}

// staleStates are the states in which the client may still believe the
// connection is open: established, and the closing states a node enters
// when it closes (kills) a session but its FIN can no longer be routed.
var staleStates = map[uint8]bool{
	1:  true, // ESTABLISHED
	4:  true, // FIN_WAIT1
	5:  true, // FIN_WAIT2
	8:  true, // CLOSE_WAIT
	9:  true, // LAST_ACK
	11: true, // CLOSING
}

// ParseProcNetTCP parses /proc/net/tcp or /proc/net/tcp6 content. Lines it
// cannot read are an error: a half-read table would silently miss clients.
func ParseProcNetTCP(data []byte) ([]Conn, error) {
	var out []Conn
	lines := bytes.Split(data, []byte("\n"))
	for i, line := range lines {
		f := bytes.Fields(line)
		if len(f) == 0 || (i == 0 && string(f[0]) == "sl") {
			continue
		}
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: too few fields", i+1)
		}
		local, err := parseAddrPort(string(f[1]))
		if err != nil {
			return nil, fmt.Errorf("line %d: local address: %w", i+1, err)
		}
		remote, err := parseAddrPort(string(f[2]))
		if err != nil {
			return nil, fmt.Errorf("line %d: remote address: %w", i+1, err)
		}
		st, err := strconv.ParseUint(string(f[3]), 16, 8)
		if err != nil {
			return nil, fmt.Errorf("line %d: state %q: %w", i+1, f[3], err)
		}
		out = append(out, Conn{Local: local, Remote: remote, State: uint8(st)})
	}
	return out, nil
}

// parseAddrPort reads "0100007F:0CEA" (IPv4) or the 32-hex-digit IPv6 form:
// the address is a sequence of 32-bit words in host (little-endian) order.
func parseAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := bytes.Cut([]byte(s), []byte(":"))
	if !ok || (len(a) != 8 && len(a) != 32) || len(p) != 4 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw := make([]byte, len(a)/2)
	if _, err := hex.Decode(raw, a); err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(string(p), 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// Stale lists the connections whose local address is vip, in a state where
// the client may still hold them open.
func Stale(vip netip.Addr) ([]Conn, error) {
	return openConns(func(c Conn) bool { return c.Local.Addr() == vip.Unmap() })
}

// Sessions selects the connections a server accepted on Port, on any
// local address, but those from SpareFrom and those to SpareTo.
type Sessions struct {
	Port      uint16
	SpareFrom []netip.Addr // remote addresses kept (the peer's sessions)
	SpareTo   []netip.Addr // local addresses kept (the VIP's: Reset's own)
}

func (s Sessions) match(c Conn) bool {
	if c.Local.Port() != s.Port {
		return false
	}
	for _, a := range s.SpareFrom {
		if c.Remote.Addr() == a.Unmap() {
			return false
		}
	}
	for _, a := range s.SpareTo {
		if c.Local.Addr() == a.Unmap() {
			return false
		}
	}
	return true
}

// Accepted lists the connections s selects, in a state where the client
// may still hold them open.
func Accepted(s Sessions) ([]Conn, error) { return openConns(s.match) }

// CloseAccepted destroys the connections Accepted lists (SOCK_DESTROY: the
// client gets an RST, the local socket fails every later read and write)
// and returns how many it found. It is how a server that cannot end its
// own sessions (hung) loses them anyway.
func CloseAccepted(s Sessions) (int, error) {
	conns, err := Accepted(s)
	if err != nil {
		return 0, fmt.Errorf("reading the socket table: %w", err)
	}
	if err := destroySockets(conns); err != nil {
		return len(conns), fmt.Errorf("closing connections to port %d: %w", s.Port, err)
	}
	return len(conns), nil
}

// openConns lists this network namespace's connections (IPv4 and IPv6) in
// a state where the client may still hold them open, that keep accepts.
func openConns(keep func(Conn) bool) ([]Conn, error) {
	var out []Conn
	// thread-self: /proc/net is the process leader's namespace, and a
	// thread may have entered another one (the tests do).
	for _, p := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		conns, err := ParseProcNetTCP(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for _, c := range conns {
			if staleStates[c.State] && c.Remote.Port() != 0 && keep(c) {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// Segment builds an IPv4 packet carrying a bare TCP ACK from src to dst
// with the given sequence and acknowledgment numbers, checksums filled in.
func Segment(src, dst netip.AddrPort, seq, ack uint32) []byte {
	const ipLen, tcpLen = 20, 20
	b := make([]byte, ipLen+tcpLen)
	ip := b[:ipLen]
	ip[0] = 0x45 // version 4, IHL 5
	binary.BigEndian.PutUint16(ip[2:], ipLen+tcpLen)
	ip[8] = 64 // TTL
	ip[9] = syscall.IPPROTO_TCP
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))

	t := b[ipLen:]
	binary.BigEndian.PutUint16(t[0:], src.Port())
	binary.BigEndian.PutUint16(t[2:], dst.Port())
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint32(t[8:], ack)
	t[12] = 5 << 4 // data offset
	t[13] = 0x10   // ACK
	binary.BigEndian.PutUint16(t[14:], 1024)
	binary.BigEndian.PutUint16(t[16:], checksum(t, pseudoSum(s4, d4, tcpLen)))
	return b
}

func pseudoSum(src, dst [4]byte, length int) uint32 {
	var s uint32
	for i := 0; i < 4; i += 2 {
		s += uint32(src[i])<<8 | uint32(src[i+1])
		s += uint32(dst[i])<<8 | uint32(dst[i+1])
	}
	return s + syscall.IPPROTO_TCP + uint32(length)
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ErrNoRawSocket means CAP_NET_RAW is missing.
var ErrNoRawSocket = errors.New("cannot open a raw socket (CAP_NET_RAW needed)")

// Send sends one out-of-window segment per connection and returns how many
// were sent. IPv6 connections are skipped (counted as not sent).
func Send(conns []Conn) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return 0, fmt.Errorf("%w: %w", ErrNoRawSocket, err)
		}
		return 0, fmt.Errorf("raw socket: %w", err)
	}
	defer syscall.Close(fd)
	sent := 0
	var errs []error
	for _, c := range conns {
		if !c.Local.Addr().Is4() || !c.Remote.Addr().Is4() {
			continue
		}
		var r [8]byte
		rand.Read(r[:])
		// A random sequence number is outside the client's window with
		// overwhelming probability; either way the client answers with
		// an ACK carrying its real numbers.
		pkt := Segment(c.Local, c.Remote, binary.BigEndian.Uint32(r[:4]), binary.BigEndian.Uint32(r[4:]))
		sa := &syscall.SockaddrInet4{Addr: c.Remote.Addr().As4()}
		if err := syscall.Sendto(fd, pkt, 0, sa); err != nil {
			errs = append(errs, fmt.Errorf("%s -> %s: %w", c.Local, c.Remote, err))
			continue
		}
		sent++
	}
	return sent, errors.Join(errs...)
}

// Reset resets every stale client of vip and closes the local sockets. A
// missing CAP_NET_RAW is logged, not returned: the fence goes on.
func Reset(ctx context.Context, vip string, log *slog.Logger) error {
	addr, err := netip.ParseAddr(vip)
	if err != nil {
		return fmt.Errorf("vip %q: %w", vip, err)
	}
	addr = addr.Unmap()
	// The first round waits for the peer to announce the VIP: a client's
	// answer that leaves before then goes to this node and is lost, and
	// the client stays silent for the whole rate limit. It also lets
	// keepalived finish removing the VIP from here.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(firstRoundAfter):
	}
	if stillLocal(addr, log) {
		// Still ours (a FAULT before the VIP left?): the connections
		// are not stale, and a reset would hit live sessions.
		return nil
	}
	conns, err := Stale(addr)
	if err != nil {
		return fmt.Errorf("reading the socket table: %w", err)
	}
	if len(conns) == 0 {
		log.Info("no stale TCP clients of the VIP", "vip", vip)
		return nil
	}
	// The segments are sent again for a while: the client's challenge ACK
	// only turns into an RST once the new holder has the VIP, which keepalived
	// gives it some time after the VIP left here (the peer's skew after a
	// priority-0 advert, 23 ms to 0.6 s by priority; seconds after a
	// failure). Clients answer an
	// out-of-window segment at most once per net.ipv4.tcp_invalid_ratelimit
	// (500 ms): a shorter period would only be ignored.
	end := time.Now().Add(resendFor)
	if dl, ok := ctx.Deadline(); ok && dl.Add(-closeReserve).Before(end) {
		end = dl.Add(-closeReserve) // leave time to close the local sockets
	}
	total := 0
	for round := 0; ; round++ {
		sent, err := Send(conns)
		total += sent
		if errors.Is(err, ErrNoRawSocket) {
			log.Warn("cannot reset stale TCP clients: no CAP_NET_RAW; closing local sockets only", "count", len(conns), "err", err)
			break
		}
		if err != nil && round == 0 {
			log.Warn("some resets failed", "sent", sent, "count", len(conns), "err", err)
		}
		if round == 0 {
			log.Info("stale TCP clients reset", "sent", sent, "count", len(conns))
		}
		if stillLocal(addr, log) {
			// The VIP came back while resending: these are live sessions
			// again, neither to reset nor to close.
			return nil
		}
		if time.Now().Add(resendEvery).After(end) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(resendEvery):
		}
		if ctx.Err() != nil {
			break
		}
	}
	log.Info("stale TCP client resets sent", "segments", total, "until", time.Now().Format("15:04:05.000"))
	if stillLocal(addr, log) {
		return nil
	}
	return closeLocal(conns, log)
}

// Resend timing, see Reset. firstRoundAfter is longer than the peer's
// takeover after a priority-0 advert with the examples' priority (a skew
// of 23 ms, and the gratuitous ARP).
const (
	firstRoundAfter = 100 * time.Millisecond
	resendFor       = 3 * time.Second
	resendEvery     = 550 * time.Millisecond
	closeReserve    = 60 * time.Millisecond
)

// closeLocal destroys the local sockets recorded at the start, and only
// those: a socket opened on the VIP since then is not stale.
func closeLocal(conns []Conn, log *slog.Logger) error {
	if err := destroySockets(conns); err != nil {
		return fmt.Errorf("closing local sockets of the VIP: %w", err)
	}
	log.Info("local sockets of the VIP closed", "count", len(conns))
	return nil
}

// isLocal asks the kernel whether addr is local here; tests replace it.
var isLocal = kernelSaysLocal

// stillLocal reports whether the sessions on addr may be live: the kernel
// says the address is local, or it could not be asked.
func stillLocal(addr netip.Addr, log *slog.Logger) bool {
	local, err := isLocal(addr)
	switch {
	case err != nil:
		log.Warn("cannot tell whether the VIP is still local: stale clients not reset", "vip", addr.String(), "err", err)
		return true
	case local:
		log.Warn("VIP is still local here: stale clients not reset, local sockets kept", "vip", addr.String())
		return true
	}
	return false
}
