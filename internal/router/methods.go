package router

import (
	"slices"
	"strings"

	"github.com/limen-gateway/limen/internal/httpx"
)

// methodSet is a set of method names: a bit per standard method, a slice for the rest.
type methodSet struct {
	bits  uint16
	other []string // sorted
}

// standardMethods are the RFC 9110 and RFC 5789 methods, which get a bit each.
var standardMethods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

const (
	// explicitOnly are CONNECT and TRACE: a route without methods does not accept them, because
	// a tunnel or a reflected request is never what a catch-all route means.
	explicitOnly = 1<<7 | 1<<8
	// anyBits is what a route without methods accepts among the standard methods.
	anyBits = (1<<len(standardMethods) - 1) &^ explicitOnly
)

// methodBit returns the bit of a standard method, or 0. A switch on the string compiles to a
// length dispatch and one comparison, cheaper than a map lookup.
func methodBit(m string) uint16 {
	switch m {
	case "GET":
		return 1 << 0
	case "HEAD":
		return 1 << 1
	case "POST":
		return 1 << 2
	case "PUT":
		return 1 << 3
	case "PATCH":
		return 1 << 4
	case "DELETE":
		return 1 << 5
	case "OPTIONS":
		return 1 << 6
	case "CONNECT":
		return 1 << 7
	case "TRACE":
		return 1 << 8
	}
	return 0
}

func (s *methodSet) add(m string) {
	if b := methodBit(m); b != 0 {
		s.bits |= b
		return
	}
	if i, found := slices.BinarySearch(s.other, m); !found {
		s.other = slices.Insert(s.other, i, m)
	}
}

func (s *methodSet) has(m string, bit uint16) bool {
	if bit != 0 {
		return s.bits&bit != 0
	}
	for _, o := range s.other {
		if o == m {
			return true
		}
	}
	return false
}

func (s methodSet) equal(o methodSet) bool {
	return s.bits == o.bits && slices.Equal(s.other, o.other)
}

// intersect returns the methods in both sets.
func (s methodSet) intersect(o methodSet) methodSet {
	out := methodSet{bits: s.bits & o.bits}
	for _, m := range s.other {
		if _, found := slices.BinarySearch(o.other, m); found {
			out.other = append(out.other, m)
		}
	}
	return out
}

func (s methodSet) empty() bool { return s.bits == 0 && len(s.other) == 0 }

// list returns the methods sorted, as an Allow header lists them.
func (s methodSet) list() []string {
	out := make([]string, 0, len(standardMethods)+len(s.other))
	for i, m := range standardMethods {
		if s.bits&(1<<i) != 0 {
			out = append(out, m)
		}
	}
	out = append(out, s.other...)
	slices.Sort(out)
	return out
}

func (s methodSet) String() string { return strings.Join(s.list(), ", ") }

// validMethod reports whether m is an RFC 9110 token without lowercase letters: methods are
// case-sensitive (section 9.1), so "get" would never match a GET request.
func validMethod(m string) bool {
	return httpx.ValidToken(m) && strings.ToUpper(m) == m
}
