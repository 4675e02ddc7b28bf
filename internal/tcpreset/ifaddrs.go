package tcpreset

import (
	"net"
	"net/netip"
)

func netInterfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ad, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ad.Unmap())
			}
		}
	}
	return out, nil
}
