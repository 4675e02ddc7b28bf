package agent

import (
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
)

// The allow-list (agent.allow): which clients may ask at all. It is
// checked on the address accept returned, before a byte is read, so a
// refused client costs an accept and a close and learns nothing, not even
// the server's version.

// allowed reports whether a client at addr may ask; an empty list lets
// everyone. IPv4 clients of a dual-stack socket arrive as IPv4-mapped
// IPv6 addresses, and link-local ones with a zone: both are compared bare.
func allowed(list []netip.Prefix, addr netip.Addr) bool {
	if len(list) == 0 {
		return true
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range list {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// sockaddrIP is the client address of a bare accept; ok is false for
// anything but IPv4 and IPv6.
func sockaddrIP(sa syscall.Sockaddr) (ip netip.Addr, ok bool) {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr), true
	case *syscall.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr), true
	}
	return netip.Addr{}, false
}

// allowSockaddr decides for the fast path. A non-IP client cannot come
// through a TCP listener; should one, it is refused whenever a list is set.
func (s *Server) allowSockaddr(sa syscall.Sockaddr) bool {
	list := *s.allow.Load()
	if len(list) == 0 {
		return true
	}
	ip, ok := sockaddrIP(sa)
	return ok && allowed(list, ip)
}

// allowConn decides for the general path. Clients of a unix socket
// (socket activation may pass one) are governed by the socket file's
// permissions, not by networks.
func (s *Server) allowConn(c net.Conn) bool {
	list := *s.allow.Load()
	if len(list) == 0 {
		return true
	}
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return allowed(list, a.AddrPort().Addr())
	case *net.UnixAddr:
		return true
	}
	return false
}

// allowMetrics counts the connections agent.allow refused.
type allowMetrics struct{ refused atomic.Uint64 }

// appendTo adds the counter to a /metrics body.
func (m *allowMetrics) appendTo(b []byte) []byte {
	b = append(b, "# HELP vipguard_agent_connections_refused_total Connections closed at accept: the client is not in agent.allow.\n"+
		"# TYPE vipguard_agent_connections_refused_total counter\n"+
		"vipguard_agent_connections_refused_total "...)
	b = strconv.AppendUint(b, m.refused.Load(), 10)
	return append(b, '\n')
}
