package cors

import (
	"errors"
	"fmt"
	"strings"
)

// pattern is a compiled allow_origin_patterns entry. Matching walks the origin once, label by
// label, with no regular expression and no allocation: a wildcard label matches [a-z0-9-]+ and
// never a dot, so "https://*.example.com" cannot be satisfied by https://evil.com/.example.com or
// https://a.b.example.com.
type pattern struct {
	src    string
	prefix string   // scheme + "://"
	labels []string // "" is a wildcard label
	port   string   // "" no port, "*" any port, else exact
}

// compilePattern parses an origin pattern; see Config.AllowOriginPatterns for the rules.
func compilePattern(s string) (pattern, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || !validScheme(scheme) {
		return pattern{}, fmt.Errorf("%q is not an origin pattern: want scheme://host[:port], e.g. https://*.example.com", s)
	}
	if s != strings.ToLower(s) {
		return pattern{}, fmt.Errorf("write %q in lowercase: browsers send origins in lowercase", s)
	}
	if i := strings.IndexAny(rest, "/?#@[]"); i >= 0 {
		return pattern{}, fmt.Errorf("%q is not an origin pattern: it may hold only a host and a port", s)
	}
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i+1:]
		if port != "*" && !validPort(port) {
			return pattern{}, fmt.Errorf("%q has an invalid port (a number, or * for any)", s)
		}
		if port == defaultPort(scheme) {
			port = ""
		}
	}
	p := pattern{src: s, prefix: scheme + "://", port: port}
	wild := false
	for _, l := range strings.Split(host, ".") {
		switch {
		case l == "*":
			wild = true
			p.labels = append(p.labels, "")
		case strings.Contains(l, "*"):
			return pattern{}, fmt.Errorf("%q: * must stand for a whole label, as in https://*.example.com", s)
		case !validLabel(l):
			return pattern{}, fmt.Errorf("%q has an invalid host label %q", s, l)
		default:
			p.labels = append(p.labels, l)
		}
	}
	if wild {
		n := len(p.labels)
		literalTail := n >= 2 && p.labels[n-1] != "" && p.labels[n-2] != ""
		if !literalTail && !(n >= 2 && p.labels[n-1] == "localhost") {
			return pattern{}, fmt.Errorf("%q: the two rightmost labels must be literal, so a pattern cannot cover a whole top-level domain", s)
		}
	} else if port != "*" {
		return pattern{}, errors.New(s + ": has no wildcard; list it in allow_origins")
	}
	return p, nil
}

// match reports whether origin matches p.
func (p *pattern) match(origin string) bool {
	if !strings.HasPrefix(origin, p.prefix) {
		return false
	}
	rest := origin[len(p.prefix):]
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i+1:]
		if port == "" {
			return false
		}
	}
	switch p.port {
	case "":
		if port != "" {
			return false
		}
	case "*":
		if port != "" && !digits(port) {
			return false
		}
	default:
		if port != p.port {
			return false
		}
	}
	for i, want := range p.labels {
		var label string
		if i == len(p.labels)-1 {
			label, host = host, ""
		} else {
			dot := strings.IndexByte(host, '.')
			if dot < 0 {
				return false
			}
			label, host = host[:dot], host[dot+1:]
		}
		if want == "" {
			if !wildLabel(label) {
				return false
			}
		} else if label != want {
			return false
		}
	}
	return true
}

// wildLabel reports whether l is one DNS label of the characters a wildcard may stand for.
func wildLabel(l string) bool {
	if l == "" || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		if c := l[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
