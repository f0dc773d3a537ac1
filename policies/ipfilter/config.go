package ipfilter

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Config is the configuration of the ip_filter policy. The client address is the one the server
// trusted (after the listener's client_ip source and trusted proxies), never a header read here.
type Config struct {
	// Allow lists the addresses and CIDR ranges allowed ("10.0.0.0/8", "2001:db8::/32",
	// "192.0.2.7"). When it is not empty, every other address is denied.
	Allow []string `json:"allow,omitempty"`
	// Deny lists the addresses and CIDR ranges denied. Deny wins over Allow.
	Deny []string `json:"deny,omitempty"`
}

// Validate checks every entry and that at least one is given.
func (c *Config) Validate() error {
	_, _, err := c.compile()
	return err
}

func (c *Config) compile() (allow, deny *set, err error) {
	if len(c.Allow) == 0 && len(c.Deny) == 0 {
		return nil, nil, errors.New("allow or deny is required")
	}
	var errs []error
	parse := func(key string, entries []string) *set {
		var ps []netip.Prefix
		for i, e := range entries {
			p, err := ParsePrefix(e)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", key, i, err))
				continue
			}
			ps = append(ps, p)
		}
		return newSet(ps)
	}
	allow, deny = parse("allow", c.Allow), parse("deny", c.Deny)
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return allow, deny, nil
}

// ParsePrefix reads an address ("192.0.2.7", "2001:db8::1") or a CIDR range ("10.0.0.0/8").
// IPv4-mapped IPv6 entries ("::ffff:192.0.2.0/120") are turned into their IPv4 form, since
// client addresses are unmapped before they are compared. Host bits set in a range
// ("10.0.0.1/8") are an error: the entry is probably not what was meant.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR range", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zoned addresses cannot be matched", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR range", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %q?", s, p.Masked().String())
	}
	// A masked prefix whose address is IPv4-mapped has at least 96 bits: the mask would
	// otherwise clear part of the ::ffff: marker.
	if a := p.Addr(); a.Is4In6() {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}
