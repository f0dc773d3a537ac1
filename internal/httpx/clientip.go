package httpx

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// IPSource is where the client address comes from.
type IPSource uint8

// The client-IP sources.
const (
	SourcePeer IPSource = iota
	SourceXForwardedFor
	SourceForwarded
	SourceProxyProtocol
)

// ParseIPSource reads a config value ("peer", "x_forwarded_for", "forwarded", "proxy_protocol").
func ParseIPSource(s string) (IPSource, error) {
	switch s {
	case "", "peer":
		return SourcePeer, nil
	case "x_forwarded_for":
		return SourceXForwardedFor, nil
	case "forwarded":
		return SourceForwarded, nil
	case "proxy_protocol":
		return SourceProxyProtocol, nil
	}
	return 0, fmt.Errorf("unknown client_ip source %q (want peer, x_forwarded_for, forwarded or proxy_protocol)", s)
}

// Trusted is a set of proxy networks whose forwarding headers are believed.
type Trusted struct{ prefixes []netip.Prefix }

// ParseTrusted parses CIDRs or single addresses.
func ParseTrusted(cidrs []string) (*Trusted, error) {
	t := &Trusted{}
	for _, c := range cidrs {
		if !strings.Contains(c, "/") {
			a, err := netip.ParseAddr(c)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", c, err)
			}
			a = a.Unmap()
			t.prefixes = append(t.prefixes, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", c, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t, nil
}

// Contains reports whether a is a trusted proxy address.
func (t *Trusted) Contains(a netip.Addr) bool {
	if t == nil || !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the client address. Forwarding headers are believed only from a trusted peer
// and are read right to left, skipping trusted hops: the first untrusted address is the client.
// A malformed or obfuscated hop stops the walk at the nearest address we can vouch for, since
// anything to its left may have been written by the client.
func ClientIP(peer netip.Addr, h http.Header, src IPSource, t *Trusted) netip.Addr {
	peer = peer.Unmap()
	if src == SourcePeer || src == SourceProxyProtocol || !t.Contains(peer) {
		return peer
	}
	client := peer
	switch src {
	case SourceXForwardedFor:
		vals := h.Values("X-Forwarded-For")
		for i := len(vals) - 1; i >= 0; i-- {
			v := vals[i]
			for v != "" {
				var hop string
				if j := strings.LastIndexByte(v, ','); j >= 0 {
					hop, v = v[j+1:], v[:j]
				} else {
					hop, v = v, ""
				}
				a, ok := parseNode(strings.TrimSpace(hop))
				if !ok {
					return client
				}
				client = a
				if !t.Contains(a) {
					return a
				}
			}
		}
	case SourceForwarded:
		elems, err := ParseForwarded(h.Values("Forwarded"))
		if err != nil {
			return client
		}
		for i := len(elems) - 1; i >= 0; i-- {
			a, ok := parseNode(elems[i].For)
			if !ok {
				return client
			}
			client = a
			if !t.Contains(a) {
				return a
			}
		}
	}
	return client
}

// parseNode parses an address as found in X-Forwarded-For or a Forwarded for= value: with or
// without a port, IPv6 in brackets or bare.
func parseNode(s string) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// ForwardedElement is one element of an RFC 7239 Forwarded header.
type ForwardedElement struct{ For, By, Host, Proto string }

var errForwarded = errors.New("malformed Forwarded header")

// ParseForwarded parses Forwarded header values (RFC 7239 §4): elements separated by commas,
// pairs by semicolons, values tokens or quoted strings.
func ParseForwarded(values []string) ([]ForwardedElement, error) {
	var out []ForwardedElement
	for _, v := range values {
		s := v
		cur := ForwardedElement{}
		pairs := 0
		for {
			s = strings.TrimLeft(s, " \t")
			if s == "" {
				if pairs == 0 {
					return nil, errForwarded
				}
				out = append(out, cur)
				break
			}
			eq := strings.IndexByte(s, '=')
			if eq <= 0 {
				return nil, errForwarded
			}
			key := strings.ToLower(strings.TrimSpace(s[:eq]))
			if !isToken(key) {
				return nil, errForwarded
			}
			s = s[eq+1:]
			var val string
			if strings.HasPrefix(s, `"`) {
				var b strings.Builder
				i := 1
				for ; i < len(s); i++ {
					c := s[i]
					if c == '\\' && i+1 < len(s) {
						i++
						b.WriteByte(s[i])
						continue
					}
					if c == '"' {
						break
					}
					b.WriteByte(c)
				}
				if i >= len(s) {
					return nil, errForwarded
				}
				val, s = b.String(), s[i+1:]
			} else {
				end := strings.IndexAny(s, ";, \t")
				if end < 0 {
					end = len(s)
				}
				val, s = s[:end], s[end:]
				if !isToken(val) {
					return nil, errForwarded
				}
			}
			switch key {
			case "for":
				cur.For = val
			case "by":
				cur.By = val
			case "host":
				cur.Host = val
			case "proto":
				cur.Proto = val
			}
			pairs++
			s = strings.TrimLeft(s, " \t")
			if s == "" {
				continue
			}
			switch s[0] {
			case ';':
				s = s[1:]
			case ',':
				out = append(out, cur)
				cur, pairs = ForwardedElement{}, 0
				s = s[1:]
			default:
				return nil, errForwarded
			}
		}
	}
	return out, nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 && c != ':' && c != '[' && c != ']' && c != '/' {
			return false
		}
	}
	return true
}

// FormatForwardedNode formats an address for a Forwarded for= value: IPv6 quoted in brackets.
func FormatForwardedNode(a netip.Addr) string {
	return string(AppendForwardedNode(nil, a))
}

// AppendForwardedNode appends FormatForwardedNode(a) to b.
func AppendForwardedNode(b []byte, a netip.Addr) []byte {
	switch {
	case !a.IsValid():
		return append(b, "unknown"...)
	case a.Is6() && !a.Is4In6():
		b = append(b, `"[`...)
		b = a.AppendTo(b)
		return append(b, `]"`...)
	}
	return a.Unmap().AppendTo(b)
}

// RequestID returns a new random request id (128 bits, hex).
func RequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidRequestID reports whether an incoming id from a trusted peer may be kept: up to 200
// visible ASCII characters without separators that could split a log line or a header.
func ValidRequestID(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' || c == ',' || c == ';' {
			return false
		}
	}
	return true
}
