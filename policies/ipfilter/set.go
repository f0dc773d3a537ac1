package ipfilter

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// set is a set of address ranges, kept per family as sorted, merged, non-overlapping [lo, hi]
// intervals, so a lookup is one binary search over integers with no allocation.
type set struct {
	v4 []span4
	v6 []span6
}

type span4 struct{ lo, hi uint32 }

// u128 is an IPv6 address as an integer, most significant half first.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) next() (u128, bool) {
	if a.lo == ^uint64(0) {
		if a.hi == ^uint64(0) {
			return a, false
		}
		return u128{a.hi + 1, 0}, true
	}
	return u128{a.hi, a.lo + 1}, true
}

type span6 struct{ lo, hi u128 }

func toU128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// newSet builds a set from masked prefixes.
func newSet(ps []netip.Prefix) *set {
	s := &set{}
	for _, p := range ps {
		if p.Addr().Is4() {
			b := p.Addr().As4()
			lo := binary.BigEndian.Uint32(b[:])
			host := uint32(0)
			if p.Bits() < 32 {
				host = ^uint32(0) >> p.Bits()
			}
			s.v4 = append(s.v4, span4{lo, lo | host})
			continue
		}
		lo := toU128(p.Addr())
		hi := lo
		switch bits := p.Bits(); {
		case bits == 0:
			hi = u128{^uint64(0), ^uint64(0)}
		case bits < 64:
			hi = u128{lo.hi | ^uint64(0)>>bits, ^uint64(0)}
		case bits < 128:
			hi = u128{lo.hi, lo.lo | ^uint64(0)>>(bits-64)}
		}
		s.v6 = append(s.v6, span6{lo, hi})
	}
	slices.SortFunc(s.v4, func(a, b span4) int { return cmp.Compare(a.lo, b.lo) })
	s.v4 = merge(s.v4, func(prev *span4, cur span4) bool {
		if prev.hi == ^uint32(0) || cur.lo <= prev.hi+1 {
			prev.hi = max(prev.hi, cur.hi)
			return true
		}
		return false
	})
	slices.SortFunc(s.v6, func(a, b span6) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		}
		return 0
	})
	s.v6 = merge(s.v6, func(prev *span6, cur span6) bool {
		n, ok := prev.hi.next()
		if !ok || !n.less(cur.lo) {
			if prev.hi.less(cur.hi) {
				prev.hi = cur.hi
			}
			return true
		}
		return false
	})
	return s
}

// merge folds sorted spans: join reports whether cur overlaps or touches prev and extends prev.
func merge[S any](spans []S, join func(prev *S, cur S) bool) []S {
	out := spans[:0]
	for _, cur := range spans {
		if len(out) > 0 && join(&out[len(out)-1], cur) {
			continue
		}
		out = append(out, cur)
	}
	return slices.Clip(out)
}

// empty reports whether the set holds no range.
func (s *set) empty() bool { return len(s.v4) == 0 && len(s.v6) == 0 }

// contains reports whether a (unmapped, without zone) is in the set.
func (s *set) contains(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		x := binary.BigEndian.Uint32(b[:])
		// Find the first span whose lo is above x; the one before it is the only candidate.
		lo, hi := 0, len(s.v4)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if s.v4[m].lo <= x {
				lo = m + 1
			} else {
				hi = m
			}
		}
		return lo > 0 && x <= s.v4[lo-1].hi
	}
	x := toU128(a)
	lo, hi := 0, len(s.v6)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if !x.less(s.v6[m].lo) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo > 0 && !s.v6[lo-1].hi.less(x)
}
