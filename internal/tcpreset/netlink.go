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
	netlinkSockDiag  = 4  // NETLINK_SOCK_DIAG
	sockDestroy      = 21 // SOCK_DESTROY
	inetDiagNoCookie = ^uint32(0)
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

// destroySocket closes the local TCP socket with exactly this 4-tuple
// (SOCK_DESTROY, what "ss -K" does, without a filter that could match
// more). A socket that is already gone is not an error.
func destroySocket(c Conn) error {
	family := uint8(syscall.AF_INET)
	if !c.Local.Addr().Is4() {
		family = syscall.AF_INET6
	}
	// inet_diag_req_v2: family, protocol, ext, pad, states, then the
	// inet_diag_sockid: ports and addresses in network order, interface,
	// cookie.
	req := make([]byte, 0, 56)
	req = append(req, family, syscall.IPPROTO_TCP, 0, 0)
	req = binary.NativeEndian.AppendUint32(req, ^uint32(0))
	req = binary.BigEndian.AppendUint16(req, c.Local.Port())
	req = binary.BigEndian.AppendUint16(req, c.Remote.Port())
	req = appendAddr16(req, c.Local.Addr())
	req = appendAddr16(req, c.Remote.Addr())
	req = binary.NativeEndian.AppendUint32(req, 0)
	req = binary.NativeEndian.AppendUint32(req, inetDiagNoCookie)
	req = binary.NativeEndian.AppendUint32(req, inetDiagNoCookie)
	_, err := netlinkRequest(netlinkSockDiag, sockDestroy, syscall.NLM_F_REQUEST|syscall.NLM_F_ACK, req)
	if errors.Is(err, syscall.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("closing %s -> %s: %w", c.Local, c.Remote, err)
	}
	return nil
}

// appendAddr16 appends a as the 16-byte address field of inet_diag_sockid
// (an IPv4 address in its first four bytes).
func appendAddr16(b []byte, a netip.Addr) []byte {
	var f [16]byte
	copy(f[:], a.AsSlice())
	return append(b, f[:]...)
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
	buf := make([]byte, 16384)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netlink answer: %w", err)
		}
		var out []syscall.NetlinkMessage
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
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
		if len(out) > 0 && flags&syscall.NLM_F_ACK == 0 {
			return out, nil
		}
	}
}
