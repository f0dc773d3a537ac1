package router

import (
	"fmt"
	"strings"

	"github.com/limen-gateway/limen/policy"
)

// segKind orders segment kinds by specificity, so comparing kinds compares precedence: a literal
// beats a parameter beats a tail.
type segKind uint8

const (
	segTail segKind = iota
	segParam
	segLiteral
)

type segment struct {
	kind segKind
	text string // the canonical literal, or the parameter's name
}

// Template is a parsed path template such as "/users/{id}" or "/files/{path...}". It is immutable
// and safe for concurrent use.
type Template struct {
	raw  string
	segs []segment
}

// ParseTemplate parses a path template. The template starts with "/" and its segments are
// separated by "/". A segment is one of:
//
//   - a literal: any bytes valid in an escaped path except braces. Escapes are put in the form
//     the server normalizes request paths to (unreserved characters decoded, other escapes in
//     uppercase hex), so "/caf%c3%a9" and "/%7Euser" match what they mean. "." and ".." are
//     rejected: they never survive normalization;
//   - a parameter "{name}": exactly one segment, never empty, never "." or "..";
//   - a tail "{name...}", last only: zero or more remaining segments.
//
// Names match [A-Za-z_][A-Za-z0-9_]* and are unique within a template. "/" is one empty literal
// segment; an empty literal segment elsewhere ("/a//b", "/a/") is significant.
func ParseTemplate(s string) (*Template, error) {
	if s == "" || s[0] != '/' {
		return nil, fmt.Errorf("path template %q must start with /", s)
	}
	t := &Template{raw: s}
	rest := s[1:]
	for {
		part, next, more := strings.Cut(rest, "/")
		seg, err := parseSegment(part)
		if err != nil {
			return nil, fmt.Errorf("path template %q: %w", s, err)
		}
		if seg.kind == segTail && more {
			return nil, fmt.Errorf("path template %q: the tail parameter {%s...} must be the last segment", s, seg.text)
		}
		if seg.kind != segLiteral {
			for _, o := range t.segs {
				if o.kind != segLiteral && o.text == seg.text {
					return nil, fmt.Errorf("path template %q: parameter {%s} appears twice", s, seg.text)
				}
			}
		}
		t.segs = append(t.segs, seg)
		if !more {
			return t, nil
		}
		rest = next
	}
}

func parseSegment(p string) (segment, error) {
	if strings.HasPrefix(p, "{") {
		if !strings.HasSuffix(p, "}") || len(p) < 2 {
			return segment{}, fmt.Errorf("malformed parameter %q: write {name} or {name...} as a whole segment", p)
		}
		name, kind := p[1:len(p)-1], segParam
		if n, ok := strings.CutSuffix(name, "..."); ok {
			name, kind = n, segTail
		}
		if !validName(name) {
			return segment{}, fmt.Errorf("parameter name %q must match [A-Za-z_][A-Za-z0-9_]*", name)
		}
		return segment{kind: kind, text: name}, nil
	}
	lit, err := canonicalLiteral(p)
	if err != nil {
		return segment{}, err
	}
	return segment{kind: segLiteral, text: lit}, nil
}

// canonicalLiteral validates a literal segment and returns it in the normalized escaped form the
// router matches against (see httpx.NormalizePath): unreserved escapes decoded, others uppercase.
func canonicalLiteral(p string) (string, error) {
	var b []byte // allocated only when the literal changes
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '{' || c == '}':
			return "", fmt.Errorf("segment %q mixes text and a parameter: a parameter must be a whole segment", p)
		case c <= ' ' || c == 0x7f || c == '?' || c == '#' || c == '\\':
			return "", fmt.Errorf("segment %q contains %q, which never appears in a normalized path (escape it)", p, c)
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return "", fmt.Errorf("segment %q has a malformed %%-escape", p)
			}
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			if v < 0x20 || v == 0x7f {
				return "", fmt.Errorf("segment %q escapes a control character, which a request path may not contain", p)
			}
			if b == nil {
				b = append(make([]byte, 0, len(p)), p[:i]...)
			}
			if isUnreserved(v) {
				b = append(b, v)
			} else {
				b = append(b, '%', upperHex(p[i+1]), upperHex(p[i+2]))
			}
			i += 2
		default:
			if b != nil {
				b = append(b, c)
			}
		}
	}
	out := p
	if b != nil {
		out = string(b)
	}
	if out == "." || out == ".." {
		return "", fmt.Errorf("dot-segment %q never matches a normalized path", p)
	}
	return out, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

func upperHex(c byte) byte {
	if c >= 'a' && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// isUnreserved reports RFC 3986 section 2.3 unreserved characters, whose escapes normalize away.
func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// String returns the template as written.
func (t *Template) String() string { return t.raw }

// Names returns the parameter names, the tail included, in template order.
func (t *Template) Names() []string {
	var out []string
	for _, s := range t.segs {
		if s.kind != segLiteral {
			out = append(out, s.text)
		}
	}
	return out
}

// Expand appends the template filled in with params to dst and returns the extended slice: the
// rewrite target of a route ("/v1/users/{id}"). Captured values are already escaped segments of a
// normalized path, so they are inserted as they are. Expand never produces a "." or ".." segment
// nor an empty segment out of an empty value:
//
//   - a {name} whose value is empty, missing, "." or ".." drops its whole segment
//     ("/v1/{id}/x" -> "/v1/x"); a "/" inside a {name} value is written as %2F so a value stays
//     one segment;
//   - a tail is inserted after its "/" as is, except that "." and ".." segments in it are dropped.
//     An empty tail therefore leaves the slash before it: "/v2/{rest...}" expands to "/v2/" with
//     an empty rest (the root of the rewritten tree, as "/files/{p...}" matched "/files" or
//     "/files/"), "/v2/a/b" with rest "a/b", and "/{rest...}" to "/".
//
// The result is never empty: it is at least "/".
func (t *Template) Expand(dst []byte, params policy.Params) []byte {
	start := len(dst)
	for _, s := range t.segs {
		switch s.kind {
		case segLiteral:
			dst = append(dst, '/')
			dst = append(dst, s.text...)
		case segParam:
			v, _ := params.Get(s.text)
			if v == "" || v == "." || v == ".." {
				continue
			}
			dst = append(dst, '/')
			for i := 0; i < len(v); i++ {
				if v[i] == '/' {
					dst = append(dst, "%2F"...)
				} else {
					dst = append(dst, v[i])
				}
			}
		case segTail:
			v, _ := params.Get(s.text)
			dst = append(dst, '/')
			dst = appendTail(dst, v)
		}
	}
	if len(dst) == start {
		dst = append(dst, '/')
	}
	return dst
}

// appendTail appends a tail value, leaving out dot-segments (which a value the router captured
// never has) so a rewrite cannot climb out of its prefix.
func appendTail(dst []byte, v string) []byte {
	if !strings.Contains(v, ".") {
		return append(dst, v...)
	}
	first := true
	for {
		seg, rest, more := strings.Cut(v, "/")
		if seg != "." && seg != ".." {
			if !first {
				dst = append(dst, '/')
			}
			dst = append(dst, seg...)
			first = false
		}
		if !more {
			return dst
		}
		v = rest
	}
}

// shape is the template with parameter names erased: two templates with the same shape match
// exactly the same paths.
func (t *Template) shape() string {
	var b strings.Builder
	for _, s := range t.segs {
		b.WriteByte('/')
		switch s.kind {
		case segLiteral:
			b.WriteString(s.text)
		case segParam:
			b.WriteString("{}")
		case segTail:
			b.WriteString("{...}")
		}
	}
	return b.String()
}
