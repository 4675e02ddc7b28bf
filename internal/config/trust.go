package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/vipguard/vipguard/internal/safefile"
)

// MaxFileSize bounds the configuration and every option file: a -c that
// names /dev/zero or a huge file must fail, not eat memory.
const MaxFileSize = 1 << 20

// readTrusted reads a file that steers the tools (the configuration, an
// option file): a regular file, no symlink, owned by root or the effective
// user, writable by no one else, at most MaxFileSize. An *safefile.Error
// names the file and the fix; other errors keep fs.ErrNotExist and friends
// visible to errors.Is.
func readTrusted(what, path string) ([]byte, fs.FileInfo, error) {
	data, fi, err := safefile.ReadTrusted(what, path, MaxFileSize)
	if err != nil {
		var se *safefile.Error
		if errors.As(err, &se) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("cannot read %s %q: %w", what, path, bareErr(err))
	}
	return data, fi, nil
}

// zeroAllowed lists the duration keys where an explicit 0 means something
// (check.max_lag = "0s" disables the lag limit; semi_sync.fallen_back_wait
// = "0s" refuses at once). Everywhere else 0 would
// silently mean "the default", which is never what a file that says 0
// asked for.
var zeroAllowed = map[string]bool{"check.max_lag": true, "semi_sync.fallen_back_wait": true}

// explicitZeros refuses duration keys the file sets to 0 where 0 is no
// value of their own.
func explicitZeros(c *Config, md toml.MetaData) error {
	var errs []error
	var walk func(v reflect.Value, key []string)
	walk = func(v reflect.Value, key []string) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			k := append(key[:len(key):len(key)], tag)
			switch fv := v.Field(i); {
			case f.Type == reflect.TypeOf(Duration{}):
				name := strings.Join(k, ".")
				if fv.Interface().(Duration).Duration == 0 && md.IsDefined(k...) && !zeroAllowed[name] {
					errs = append(errs, fmt.Errorf("%s is 0: give a positive duration, or leave the key out for the default", name))
				}
			case f.Type.Kind() == reflect.Struct:
				walk(fv, k)
			}
		}
	}
	walk(reflect.ValueOf(c).Elem(), nil)
	return errors.Join(errs...)
}

// maxAllow bounds agent.allow: every accepted connection is matched
// against each entry.
const maxAllow = 64

// validAllow checks agent.allow strictly: a CIDR without host bits, or a
// single address; no names, no zones.
func validAllow(list []string, bad func(format string, args ...any)) {
	if len(list) > maxAllow {
		bad("agent.allow lists %d networks; at most %d", len(list), maxAllow)
	}
	for _, s := range list {
		if _, err := parseAllow(s); err != nil {
			bad("agent.allow: %q: %v", s, err)
		}
	}
}

func parseAllow(s string) (netip.Prefix, error) {
	if strings.TrimSpace(s) != s || s == "" {
		return netip.Prefix{}, errors.New("want a CIDR (192.0.2.0/24) or an IP address, without spaces")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not a CIDR such as 192.0.2.0/24 or 2001:db8::/64")
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, errors.New("an IPv4-mapped IPv6 network; write the IPv4 form")
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("has bits set past the prefix length; did you mean %q?", m.String())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errors.New("not an IP address or a CIDR (no names)")
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("has a zone; write the address without %zone")
	}
	if a.Is4In6() {
		return netip.Prefix{}, errors.New("an IPv4-mapped IPv6 address; write the IPv4 form")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// AllowList returns agent.allow as networks; nil means every client may
// ask. Entries are valid once the configuration was validated.
func (a *Agent) AllowList() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range a.Allow {
		if p, err := parseAllow(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}
