package router

import (
	"fmt"
	"strings"

	"github.com/limen-gateway/limen/policy"
)

// maxParams bounds the parameters of one template, so matching keeps them in fixed arrays.
const maxParams = 16

// segKind orders segment kinds by specificity: a literal beats a parameter beats a tail.
type segKind uint8

const (
	segTail segKind = iota
	segParam
	segLiteral
)

type segment struct {
	kind segKind
	text string // the literal, or the parameter's name
}

// Template is a parsed path template: "/users/{id}", "/files/{path...}".
type Template struct {
	raw  string
	segs []segment
}

// ParseTemplate parses a path template. Segments are separated by "/"; a segment is a literal, a
// parameter "{name}" (exactly one non-empty segment) or, last only, a tail "{name...}" (zero or
// more segments). Literals may not contain braces. "/" is one empty literal segment.
func ParseTemplate(s string) (*Template, error) {
	if s == "" || s[0] != '/' {
		return nil, fmt.Errorf("path template %q must start with /", s)
	}
	t := &Template{raw: s}
	parts := strings.Split(s[1:], "/")
	seen := map[string]bool{}
	for i, p := range parts {
		if !strings.HasPrefix(p, "{") {
			if strings.ContainsAny(p, "{}") {
				return nil, fmt.Errorf("path template %q: segment %q mixes text and a parameter; a parameter must be a whole segment", s, p)
			}
			if p == "." || p == ".." {
				return nil, fmt.Errorf("path template %q: dot-segments never match a normalized path", s)
			}
			t.segs = append(t.segs, segment{kind: segLiteral, text: p})
			continue
		}
		if !strings.HasSuffix(p, "}") || strings.Count(p, "{") != 1 || strings.Count(p, "}") != 1 {
			return nil, fmt.Errorf("path template %q: malformed parameter %q", s, p)
		}
		name := p[1 : len(p)-1]
		kind := segParam
		if strings.HasSuffix(name, "...") {
			name = strings.TrimSuffix(name, "...")
			kind = segTail
			if i != len(parts)-1 {
				return nil, fmt.Errorf("path template %q: the tail parameter {%s...} must be the last segment", s, name)
			}
		}
		if !validName(name) {
			return nil, fmt.Errorf("path template %q: parameter name %q must match [A-Za-z_][A-Za-z0-9_]*", s, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("path template %q: parameter {%s} appears twice", s, name)
		}
		seen[name] = true
		if len(seen) > maxParams {
			return nil, fmt.Errorf("path template %q: more than %d parameters", s, maxParams)
		}
		t.segs = append(t.segs, segment{kind: kind, text: name})
	}
	return t, nil
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

// Names returns the parameter names in order.
func (t *Template) Names() []string {
	var out []string
	for _, s := range t.segs {
		if s.kind != segLiteral {
			out = append(out, s.text)
		}
	}
	return out
}

// Expand appends the template filled with params to dst (a rewrite target such as
// "/v1/users/{id}"). Captured values are already escaped segments of a normalized path, so they are
// inserted as they are: they never contain "." or ".." segments or unescaped slashes (a tail
// contains slashes only between its segments). An empty tail drops its segment, so "/v2/{rest...}"
// with an empty rest is "/v2"; a parameter missing from params expands to nothing.
func (t *Template) Expand(dst []byte, params policy.Params) []byte {
	for i, s := range t.segs {
		switch s.kind {
		case segLiteral:
			dst = append(dst, '/')
			dst = append(dst, s.text...)
		case segParam:
			v, _ := params.Get(s.text)
			dst = append(dst, '/')
			dst = append(dst, v...)
		case segTail:
			v, _ := params.Get(s.text)
			if v == "" && i > 0 {
				continue
			}
			dst = append(dst, '/')
			dst = append(dst, v...)
		}
	}
	if len(dst) == 0 {
		dst = append(dst, '/')
	}
	return dst
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
