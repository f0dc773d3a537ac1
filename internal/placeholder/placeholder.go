// Package placeholder compiles header-value templates such as "{request.header.X-Tenant}/{route}"
// once, when a snapshot is built, so rendering them per request is a walk over pre-parsed segments
// with no parsing, no maps and no allocations beyond the caller's buffer.
//
// Syntax: literal text with placeholders in braces. "{{" is a literal "{" and "}}" a literal "}"
// (the str.format convention); a lone "}" is an error so a typo never renders half a placeholder.
//
//	{request.header.Name}  the request header Name (values joined with ", "; empty when absent)
//	{request.host}         the Host the client sent, as received
//	{request.method}       the request method
//	{request.path}         the normalized path in its escaped form
//	{request.query.name}   the first value of query parameter name, unescaped; empty when absent
//	{client_ip}            the client IP the server trusted (after the trusted-proxy rules)
//	{route}                the matched route's name
//	{request_id}           the request id
//	{param.name}           the captured path parameter name (escaped, as matched)
//	{consumer}             the authenticated principal's id; empty when anonymous
//	{env.NAME}             the environment variable NAME, read once at compile time
//
// Values taken from the request can hold bytes that are invalid in a header field; control
// characters other than HTAB are rendered as a space, as RFC 9110 §5.5 allows a recipient to do,
// so a template can never split a header or smuggle CR/LF upstream.
package placeholder

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"os"
	"strings"

	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/policy"
)

// kind says what a segment renders.
type kind uint8

const (
	literal kind = iota
	header
	host
	method
	path
	query
	clientIP
	route
	requestID
	param
	consumer
)

// segment is one pre-parsed piece of a template: literal text or one placeholder with its
// argument (a canonical header name, a query or parameter name).
type segment struct {
	kind kind
	arg  string
}

// Template is a compiled template. It is immutable and safe for concurrent use.
type Template struct {
	src      string
	segs     []segment
	constant bool
	value    string // the rendered value when constant
	exchange bool   // whether any segment reads the policy.Exchange
}

// ErrSyntax is wrapped by every error Compile returns for malformed input.
var ErrSyntax = errors.New("invalid template")

// Compile parses s. Unknown placeholders are errors that name the placeholder, so a typo in
// config fails the reload instead of rendering an empty value forever.
func Compile(s string) (*Template, error) {
	t := &Template{src: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.segs = append(t.segs, segment{kind: literal, arg: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i += 2
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i += 2
		case c == '}':
			return nil, fmt.Errorf("%w %q: unmatched \"}\" at offset %d (write \"}}\" for a literal brace)", ErrSyntax, s, i)
		case c == '{':
			end := strings.IndexAny(s[i+1:], "{}")
			if end < 0 || s[i+1+end] == '{' {
				return nil, fmt.Errorf("%w %q: unterminated placeholder at offset %d (write \"{{\" for a literal brace)", ErrSyntax, s, i)
			}
			name := s[i+1 : i+1+end]
			seg, err := parsePlaceholder(name)
			if err != nil {
				return nil, fmt.Errorf("%w %q: %w", ErrSyntax, s, err)
			}
			if seg.kind == literal {
				// {env.NAME} is resolved now, so it joins the surrounding literal text.
				lit.WriteString(seg.arg)
			} else {
				flush()
				t.segs = append(t.segs, seg)
			}
			i += end + 2
		case (c < 0x20 && c != '\t') || c == 0x7f:
			return nil, fmt.Errorf("%w %q: control character %#02x at offset %d is not allowed in a header value", ErrSyntax, s, c, i)
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	switch len(t.segs) {
	case 0:
		t.constant = true
	case 1:
		if t.segs[0].kind == literal {
			t.constant = true
			t.value = t.segs[0].arg
		}
	}
	for _, sg := range t.segs {
		switch sg.kind {
		case clientIP, route, requestID, param, consumer:
			t.exchange = true
		}
	}
	return t, nil
}

// MustCompile is Compile for templates known to be valid; it panics on error.
func MustCompile(s string) *Template {
	t, err := Compile(s)
	if err != nil {
		panic(err)
	}
	return t
}

func parsePlaceholder(name string) (segment, error) {
	if name == "" {
		return segment{}, fmt.Errorf("empty placeholder \"{}\"")
	}
	switch name {
	case "request.host":
		return segment{kind: host}, nil
	case "request.method":
		return segment{kind: method}, nil
	case "request.path":
		return segment{kind: path}, nil
	case "client_ip":
		return segment{kind: clientIP}, nil
	case "route":
		return segment{kind: route}, nil
	case "request_id":
		return segment{kind: requestID}, nil
	case "consumer":
		return segment{kind: consumer}, nil
	}
	prefix, arg, _ := splitArg(name)
	switch prefix {
	case "request.header":
		if !httpx.ValidToken(arg) {
			return segment{}, fmt.Errorf("placeholder {%s}: %q is not a valid header name", name, arg)
		}
		return segment{kind: header, arg: textproto.CanonicalMIMEHeaderKey(arg)}, nil
	case "request.query":
		if arg == "" {
			return segment{}, fmt.Errorf("placeholder {%s} needs a parameter name", name)
		}
		return segment{kind: query, arg: arg}, nil
	case "param":
		if arg == "" {
			return segment{}, fmt.Errorf("placeholder {%s} needs a parameter name", name)
		}
		return segment{kind: param, arg: arg}, nil
	case "env":
		if arg == "" {
			return segment{}, fmt.Errorf("placeholder {%s} needs a variable name", name)
		}
		v := os.Getenv(arg)
		if !httpx.ValidFieldValue(v) {
			return segment{}, fmt.Errorf("placeholder {%s}: the variable's value is not a valid header value", name)
		}
		return segment{kind: literal, arg: v}, nil
	}
	return segment{}, fmt.Errorf("unknown placeholder {%s} (want request.header.<name>, request.host, request.method, request.path, request.query.<name>, client_ip, route, request_id, param.<name>, consumer or env.<NAME>)", name)
}

// splitArg splits "request.header.X-Name" into the known prefix and its argument. Header and
// query names may themselves contain dots, so the prefix is matched, not the last dot.
func splitArg(name string) (prefix, arg string, ok bool) {
	for _, p := range [...]string{"request.header.", "request.query.", "param.", "env."} {
		if strings.HasPrefix(name, p) {
			return p[:len(p)-1], name[len(p):], true
		}
	}
	return "", "", false
}

// String returns the template's source text.
func (t *Template) String() string { return t.src }

// IsConst reports whether the template has no request-dependent placeholder; Value then returns
// what every Render would produce.
func (t *Template) IsConst() bool { return t.constant }

// Value returns the rendered text of a constant template, and "" for any other.
func (t *Template) Value() string { return t.value }

// Render appends the template rendered for r to dst and returns the extended buffer.
func (t *Template) Render(dst []byte, r *http.Request) []byte {
	if t.constant {
		return append(dst, t.value...)
	}
	var ex *policy.Exchange
	if t.exchange {
		ex = policy.ExchangeFrom(r.Context())
	}
	for i := range t.segs {
		sg := &t.segs[i]
		switch sg.kind {
		case literal:
			dst = append(dst, sg.arg...)
		case header:
			for j, v := range r.Header[sg.arg] {
				if j > 0 {
					dst = append(dst, ", "...)
				}
				dst = appendSafe(dst, v)
			}
		case host:
			dst = appendSafe(dst, r.Host)
		case method:
			dst = appendSafe(dst, r.Method)
		case path:
			if r.URL != nil {
				if r.URL.RawPath != "" {
					dst = appendSafe(dst, r.URL.RawPath)
				} else {
					dst = appendSafe(dst, r.URL.Path)
				}
			}
		case query:
			if r.URL != nil {
				dst = appendQuery(dst, r.URL.RawQuery, sg.arg)
			}
		case clientIP:
			if ex != nil && ex.ClientIP.IsValid() {
				dst = ex.ClientIP.AppendTo(dst)
			}
		case route:
			if ex != nil {
				dst = appendSafe(dst, ex.Route)
			}
		case requestID:
			if ex != nil {
				dst = appendSafe(dst, ex.RequestID)
			}
		case param:
			if ex != nil {
				if v, ok := ex.Params.Get(sg.arg); ok {
					dst = appendSafe(dst, v)
				}
			}
		case consumer:
			if ex != nil && ex.Principal != nil {
				dst = appendSafe(dst, ex.Principal.ID)
			}
		}
	}
	return dst
}

// appendSafe appends s with control characters other than HTAB replaced by a space (RFC 9110
// §5.5): request-derived values must never end a header line early.
func appendSafe(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			dst = append(dst, s[start:i]...)
			dst = append(dst, ' ')
			start = i + 1
		}
	}
	return append(dst, s[start:]...)
}

// appendQuery appends the unescaped first value of the query parameter name found in raw, without
// building a url.Values map. Keys are compared after unescaping, like url.ParseQuery does.
func appendQuery(dst []byte, raw, name string) []byte {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		key, val, _ := strings.Cut(pair, "=")
		if !queryKeyEqual(key, name) {
			continue
		}
		return appendUnescaped(dst, val)
	}
	return dst
}

// queryKeyEqual reports whether the raw (escaped) key unescapes to name, without allocating.
func queryKeyEqual(raw, name string) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(raw) && ishex(raw[i+1]) && ishex(raw[i+2]):
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		}
		if j >= len(name) || name[j] != c {
			return false
		}
		j++
	}
	return j == len(name)
}

// appendUnescaped decodes a query value ("+" is a space, %XX a byte; a malformed escape is kept
// as written) into dst, replacing control characters as appendSafe does.
func appendUnescaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]):
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
		}
		if (c < 0x20 && c != '\t') || c == 0x7f {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
