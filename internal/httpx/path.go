package httpx

import (
	"errors"
	"strings"
)

// PathOptions tune path normalization.
type PathOptions struct {
	// MergeSlashes merges repeated slashes ("//a" -> "/a").
	MergeSlashes bool
	// KeepEscapedSlashes keeps %2F and %5C (encoded / and \) instead of rejecting them.
	KeepEscapedSlashes bool
}

// Path errors. Each maps to a 400 with its own code.
var (
	ErrBadPath      = errors.New("invalid request path")
	ErrBadEscape    = errors.New("invalid percent-encoding in the path")
	ErrEncodedSlash = errors.New("encoded slash or backslash in the path")
	ErrBackslash    = errors.New("backslash in the path")
	ErrNUL          = errors.New("NUL byte in the path")
	ErrDotSegment   = errors.New("dot-segment with parameters in the path")
)

// PathErrorCode is the problem code for a normalization error.
func PathErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrEncodedSlash):
		return "encoded_slash"
	case errors.Is(err, ErrBackslash):
		return "backslash_in_path"
	case errors.Is(err, ErrNUL):
		return "nul_in_path"
	case errors.Is(err, ErrBadEscape):
		return "bad_escape"
	case errors.Is(err, ErrDotSegment):
		return "dot_segment_parameter"
	}
	return "bad_path"
}

// NormalizePath turns the raw path of a request target into the canonical escaped form every
// later layer uses: the router matches it and the proxy forwards those same bytes.
//
//   - Only unreserved characters (ALPHA DIGIT - . _ ~) are decoded; other escapes are kept with
//     uppercase hex, so "%2e%2e" is "..", which the dot-segment rule then removes.
//   - Dot-segments are removed (RFC 3986 §5.2.4), clamped at the root.
//   - Repeated slashes are merged when MergeSlashes is set.
//   - %2F and %5C are rejected unless KeepEscapedSlashes; a raw backslash, NUL and control
//     characters are always rejected.
//   - ";" is an ordinary character, but a segment that is "." or ".." before a ";" ("..;x") is
//     rejected: Java servers strip path parameters and would resolve it as "..", the classic
//     gateway bypass ("/public/..;/admin").
//
// Paths are case-sensitive.
func NormalizePath(raw string, o PathOptions) (string, error) {
	if raw == "" || raw[0] != '/' {
		return "", ErrBadPath
	}
	if fastPath(raw, o) {
		return raw, nil
	}
	// Decode unreserved escapes and validate the rest.
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return "", ErrBadEscape
			}
			v := unhex(raw[i+1])<<4 | unhex(raw[i+2])
			switch {
			case v == 0:
				return "", ErrNUL
			case v < 0x20 || v == 0x7f:
				return "", ErrBadPath
			case v == '/' || v == '\\':
				if !o.KeepEscapedSlashes {
					return "", ErrEncodedSlash
				}
			case isUnreserved(v):
				b.WriteByte(v)
				i += 2
				continue
			}
			b.WriteByte('%')
			b.WriteByte(upperHex(raw[i+1]))
			b.WriteByte(upperHex(raw[i+2]))
			i += 2
		case c == '\\':
			return "", ErrBackslash
		case c == 0:
			return "", ErrNUL
		case c < 0x20 || c == 0x7f || c == ' ' || c == '#' || c == '?':
			return "", ErrBadPath
		default:
			b.WriteByte(c)
		}
	}
	return cleanSegments(b.String(), o.MergeSlashes)
}

// fastPath reports whether raw is already canonical: no escapes, dots, double slashes, or bytes
// that need checking. Most real requests take it and allocate nothing.
func fastPath(raw string, o PathOptions) bool {
	prev := byte(0)
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '%' || c == '.' || c == '\\' || c <= ' ' || c >= 0x7f || c == '#' || c == '?' {
			return false
		}
		if c == '/' && prev == '/' && o.MergeSlashes {
			return false
		}
		prev = c
	}
	return true
}

// cleanSegments removes dot-segments and, optionally, empty segments.
func cleanSegments(p string, merge bool) (string, error) {
	trailing := strings.HasSuffix(p, "/")
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				trailing = true
			}
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				trailing = true
			}
			continue
		case "":
			if merge || last {
				continue
			}
		}
		if semi := strings.IndexByte(s, ';'); semi >= 0 {
			if base := s[:semi]; base == "." || base == ".." {
				return "", ErrDotSegment
			}
		}
		out = append(out, s)
	}
	res := "/" + strings.Join(out, "/")
	if trailing && res != "/" {
		res += "/"
	}
	return res, nil
}

// UnescapePath decodes an escaped canonical path into the form net/http keeps in URL.Path.
func UnescapePath(escaped string) string {
	if strings.IndexByte(escaped, '%') < 0 {
		return escaped
	}
	b := make([]byte, 0, len(escaped))
	for i := 0; i < len(escaped); i++ {
		if escaped[i] == '%' && i+2 < len(escaped) && isHex(escaped[i+1]) && isHex(escaped[i+2]) {
			b = append(b, unhex(escaped[i+1])<<4|unhex(escaped[i+2]))
			i += 2
			continue
		}
		b = append(b, escaped[i])
	}
	return string(b)
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func upperHex(c byte) byte {
	if c >= 'a' && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// NormalizeHost lowercases a Host value and removes its port and one trailing dot, so
// "API.Example.com.:8080" matches a route for api.example.com. IPv6 literals lose their brackets.
func NormalizeHost(host string) (string, error) {
	h := host
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", errBadHost
		}
		rest := h[end+1:]
		if rest != "" && (rest[0] != ':' || !allDigits(rest[1:])) {
			return "", errBadHost
		}
		h = h[1:end]
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if !allDigits(h[i+1:]) || strings.IndexByte(h[:i], ':') >= 0 {
			return "", errBadHost
		}
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 255 {
		return "", errBadHost
	}
	lower := true
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'A' && c <= 'Z':
			lower = false
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == ':':
		case c == '.':
			if i == 0 || h[i-1] == '.' {
				return "", errBadHost
			}
		default:
			return "", errBadHost
		}
	}
	if !lower {
		h = strings.ToLower(h)
	}
	return h, nil
}

var errBadHost = errors.New("invalid Host header")

func allDigits(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
