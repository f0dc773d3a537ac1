package router

import "sort"

// methodSet is a small set of method names: a bit per standard method, a slice for the rest.
type methodSet struct {
	bits  uint16
	other []string
}

var standardMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

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

const explicitOnly = 1<<7 | 1<<8 // CONNECT and TRACE match only routes that list them

func (s *methodSet) add(m string) {
	if b := methodBit(m); b != 0 {
		s.bits |= b
		return
	}
	for _, o := range s.other {
		if o == m {
			return
		}
	}
	s.other = append(s.other, m)
}

func (e *entry) methodAllowed(m string) bool {
	b := methodBit(m)
	if e.anyMethod {
		return b&explicitOnly == 0
	}
	if b != 0 {
		return e.methods.bits&b != 0
	}
	for _, o := range e.methods.other {
		if o == m {
			return true
		}
	}
	return false
}

// overlaps reports whether two routes' method sets make them indistinguishable: both without
// methods, or both listing a shared method. A route with methods and one without are ordered by
// precedence rule 4, so they never conflict.
func (s methodSet) overlaps(o methodSet, anyS, anyO bool) bool {
	if anyS || anyO {
		return anyS && anyO
	}
	if s.bits&o.bits != 0 {
		return true
	}
	for _, a := range s.other {
		for _, b := range o.other {
			if a == b {
				return true
			}
		}
	}
	return false
}

func (s methodSet) list() []string {
	var out []string
	for _, m := range standardMethods {
		if s.bits&methodBit(m) != 0 {
			out = append(out, m)
		}
	}
	out = append(out, s.other...)
	sort.Strings(out)
	return out
}
