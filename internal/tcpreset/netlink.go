package tcpreset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"
)

// netlinkTimeout bounds each exchange with the kernel: a reply that never
// comes must not hold up a fence.
const netlinkTimeout = time.Second

// Constants the syscall package lacks (linux/sock_diag.h, inet_diag.h).
const (
	netlinkSockDiag = 4  // NETLINK_SOCK_DIAG
	sockDestroy     = 21 // SOCK_DESTROY
)

// kernelSaysLocal asks the kernel to route addr, as "ip route get" does: the
// address is local exactly when the answer is a route of type local. That
// covers an address on any interface and one delivered locally by a route
// ("ip route add local … table local"), which a list of interface
// addresses misses.
func kernelSaysLocal(addr netip.Addr) (bool, error) {
	family, bits := uint8(syscall.AF_INET), uint8(32)
	if !addr.Is4() {
		family, bits = syscall.AF_INET6, 128
	}
	raw := addr.AsSlice()
	// rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
	req := make([]byte, syscall.SizeofRtMsg, syscall.SizeofRtMsg+syscall.SizeofRtAttr+len(raw))
	req[0], req[1] = family, bits
	req = binary.NativeEndian.AppendUint16(req, uint16(syscall.SizeofRtAttr+len(raw)))
	req = binary.NativeEndian.AppendUint16(req, syscall.RTA_DST)
	req = append(req, raw...)
	msgs, err := netlinkRequest(syscall.NETLINK_ROUTE, syscall.RTM_GETROUTE, syscall.NLM_F_REQUEST, req)
	if err != nil {
		return false, fmt.Errorf("route lookup of %s: %w", addr, err)
	}
	for _, m := range msgs {
		if m.Header.Type == syscall.RTM_NEWROUTE && len(m.Data) >= syscall.SizeofRtMsg {
			return m.Data[7] == syscall.RTN_LOCAL, nil
		}
	}
	return false, fmt.Errorf("route lookup of %s: no route in the kernel's answer", addr)
}

// destroySockets closes the local TCP sockets with exactly these 4-tuples
// (SOCK_DESTROY, what "ss -K" does, without a filter that could match
// more). Sockets that are already gone are not an error.
//
// The kernel finds the socket to destroy the way it routes a packet: the
// connection with that 4-tuple, or, when there is none any more, the
// socket listening on the local port — mysqld's listener, whose
// destruction would leave mysqld spinning on a dead socket. So the
// connections are first looked up in one dump of connections (listeners
// are not in it) and each is destroyed by the identity the dump gave,
// cookie included, which no other socket has.
func destroySockets(conns []Conn) error {
	if len(conns) == 0 {
		return nil
	}
	found, err := findConns(conns)
	if err != nil {
		return fmt.Errorf("listing connections: %w", err)
	}
	var errs []error
	for _, c := range conns {
		s, ok := found[[2]netip.AddrPort{c.Local, c.Remote}]
		if !ok {
			continue
		}
		req := append(diagRequest(s.family, staleStateMask()), s.id...)
		_, err := netlinkRequest(netlinkSockDiag, sockDestroy, syscall.NLM_F_REQUEST|syscall.NLM_F_ACK, req)
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESTALE) {
			// Gone meanwhile; its port may have a new owner, untouched.
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("closing %s -> %s: %w", c.Local, c.Remote, err))
		}
	}
	return errors.Join(errs...)
}

// diagRequest starts an inet_diag_req_v2: family, protocol, ext, pad, the
// state bitmask; the inet_diag_sockid follows.
func diagRequest(family uint8, states uint32) []byte {
	req := make([]byte, 0, 56)
	req = append(req, family, syscall.IPPROTO_TCP, 0, 0)
	return binary.NativeEndian.AppendUint32(req, states)
}

// staleStateMask is staleStates as the kernel's state bitmask.
func staleStateMask() uint32 {
	var m uint32
	for st := range staleStates {
		m |= 1 << st
	}
	return m
}

// Sizes and offsets of the kernel's inet_diag structures: an
// inet_diag_sockid (ports, addresses, interface, cookie) is 48 bytes and
// sits at offset 4 of an inet_diag_msg (family, state, timer, retrans,
// sockid, expires, rqueue, wqueue, uid, inode).
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	sockIDLen        = 48
	inetDiagMsgLen   = 72
)

// diagSocket is how the kernel identifies one dumped socket.
type diagSocket struct {
	family uint8
	id     []byte // inet_diag_sockid
}

// findConns dumps the connections in staleStates, IPv4 and IPv6 (a dual-
// stack listener's IPv4 clients are IPv6 sockets), once, and returns those
// among conns by their 4-tuple.
func findConns(conns []Conn) (map[[2]netip.AddrPort]diagSocket, error) {
	want := make(map[[2]netip.AddrPort]bool, len(conns))
	for _, c := range conns {
		want[[2]netip.AddrPort{c.Local, c.Remote}] = true
	}
	found := map[[2]netip.AddrPort]diagSocket{}
	for _, fam := range []uint8{syscall.AF_INET, syscall.AF_INET6} {
		req := append(diagRequest(fam, staleStateMask()), make([]byte, sockIDLen)...)
		msgs, err := netlinkRequest(netlinkSockDiag, sockDiagByFamily, syscall.NLM_F_REQUEST|syscall.NLM_F_DUMP, req)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			local, remote, ok := parseDiagMsg(m.Data)
			if k := [2]netip.AddrPort{local, remote}; ok && want[k] {
				found[k] = diagSocket{family: m.Data[0], id: m.Data[4 : 4+sockIDLen]}
			}
		}
	}
	return found, nil
}

// parseDiagMsg reads the 4-tuple of one inet_diag_msg, IPv4-mapped
// addresses unmapped.
func parseDiagMsg(d []byte) (local, remote netip.AddrPort, ok bool) {
	if len(d) < inetDiagMsgLen {
		return local, remote, false
	}
	addr := func(b []byte) netip.Addr {
		if d[0] == syscall.AF_INET {
			return netip.AddrFrom4([4]byte(b[:4]))
		}
		return netip.AddrFrom16([16]byte(b[:16])).Unmap()
	}
	local = netip.AddrPortFrom(addr(d[8:24]), binary.BigEndian.Uint16(d[4:6]))
	remote = netip.AddrPortFrom(addr(d[24:40]), binary.BigEndian.Uint16(d[6:8]))
	return local, remote, true
}

// netlinkRequest sends one request and returns the kernel's answer, up to
// the acknowledgement or the first answer for requests without one. A
// negative acknowledgement is returned as its errno.
func netlinkRequest(proto int, typ, flags uint16, body []byte) ([]syscall.NetlinkMessage, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	defer syscall.Close(fd)
	tv := syscall.NsecToTimeval(netlinkTimeout.Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	const seq = 1
	msg := make([]byte, 0, syscall.NLMSG_HDRLEN+len(body))
	msg = binary.NativeEndian.AppendUint32(msg, uint32(syscall.NLMSG_HDRLEN+len(body)))
	msg = binary.NativeEndian.AppendUint16(msg, typ)
	msg = binary.NativeEndian.AppendUint16(msg, flags)
	msg = binary.NativeEndian.AppendUint32(msg, seq)
	msg = binary.NativeEndian.AppendUint32(msg, 0)
	msg = append(msg, body...)
	if err := syscall.Sendto(fd, msg, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink send: %w", err)
	}
	var out []syscall.NetlinkMessage
	for {
		// A new buffer each time: the messages kept point into it. The
		// kernel fills a dump datagram up to 32 KiB; twice that leaves room.
		buf := make([]byte, 64<<10)
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netlink answer: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			if m.Header.Type == syscall.NLMSG_DONE {
				return out, nil
			}
			if m.Header.Type == syscall.NLMSG_ERROR {
				if len(m.Data) < 4 {
					return nil, errors.New("netlink answer: short error message")
				}
				if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
					return nil, syscall.Errno(errno)
				}
				return out, nil
			}
			out = append(out, m)
		}
		if len(out) > 0 && flags&(syscall.NLM_F_ACK|syscall.NLM_F_DUMP) == 0 {
			return out, nil
		}
	}
}
