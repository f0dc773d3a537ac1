package router

import (
	"net/http"
	"slices"
	"strings"

	"github.com/limen-gateway/limen/policy"
)

// matcher is the state of one lookup. It lives on Match's stack.
type matcher struct {
	method   string
	bit      uint16
	h        http.Header
	rawQuery string
	ps       policy.Params // params as given, then the values captured on the current trie path
	base     int           // len(params) as given
	win      *entry

	// Routes that matched everything but the method, for the 405 answer.
	first405 *entry
	mixed    bool // another route with a different method set matched too
	bits405  uint16
	other405 []string
}

// cursor walks one host group's list of priority groups.
type cursor struct {
	gs []*group
	i  int
}

// Match finds the route for a request. host is the normalized host, path the normalized escaped
// path; h and rawQuery are read only for routes with header or query matchers. The captured
// parameters are appended to params (pass ex.Params[:0] to reuse its capacity) in template order,
// the tail last; on NotFound and MethodNotAllowed params is returned with nothing appended.
//
// idx is the index of the matched route in the slice given to Compile, NotFound, or
// MethodNotAllowed with allow set to the value of the Allow header ("GET, HEAD, POST").
func (t *Table) Match(method, host, path string, h http.Header, rawQuery string, params policy.Params) (idx int, out policy.Params, allow string) {
	if path == "" || path[0] != '/' {
		return NotFound, params, "" // "*" (OPTIONS *) and authority forms are not routable
	}
	m := matcher{method: method, bit: methodBit(method), h: h, rawQuery: rawQuery, ps: params, base: len(params)}

	// The groups that can apply to the host, in rule 2's order. Most hosts need one or two.
	var buf [6]cursor
	cs := buf[:0]
	if len(t.exact) > 0 {
		if gs := t.exact[host]; gs != nil {
			cs = append(cs, cursor{gs: gs})
		}
	}
	if len(t.wild) > 0 {
		// Every proper suffix that starts at a dot, longest first.
		for i := strings.IndexByte(host, '.'); i > 0; {
			suffix := host[i:]
			if len(suffix) < t.wildMin {
				break
			}
			if len(suffix) <= t.wildMax {
				if gs := t.wild[suffix]; gs != nil {
					cs = append(cs, cursor{gs: gs})
				}
			}
			j := strings.IndexByte(suffix[1:], '.')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	if len(t.any) > 0 {
		cs = append(cs, cursor{gs: t.any})
	}

	// Merge the groups by priority (rule 1), keeping rule 2's order among equal priorities.
	for {
		best, found := 0, false
		for i := range cs {
			if c := &cs[i]; c.i < len(c.gs) && (!found || c.gs[c.i].priority > best) {
				best, found = c.gs[c.i].priority, true
			}
		}
		if !found {
			break
		}
		for i := range cs {
			c := &cs[i]
			if c.i < len(c.gs) && c.gs[c.i].priority == best {
				g := c.gs[c.i]
				c.i++
				if m.walk(g.root, path) {
					return m.win.idx, m.ps, ""
				}
			}
		}
	}
	if m.first405 != nil {
		return MethodNotAllowed, m.ps[:m.base], m.allow()
	}
	return NotFound, m.ps[:m.base], ""
}

// walk tries the routes below n for path ("" or "/..."), in precedence order: a static child,
// then the parameter child, then tails, then routes ending here. It stops at the first match.
func (m *matcher) walk(n *node, path string) bool {
	if path != "" {
		seg, next := path[1:], ""
		if i := strings.IndexByte(seg, '/'); i >= 0 {
			seg, next = seg[:i], seg[i:]
		}
		if c := n.child(seg); c != nil && m.walk(c, next) {
			return true
		}
		if n.param != nil && seg != "" && seg != "." && seg != ".." {
			m.ps = append(m.ps, policy.Param{Value: seg})
			if m.walk(n.param, next) {
				return true
			}
			m.ps = m.ps[:len(m.ps)-1]
		}
	}
	if len(n.tails) > 0 {
		tail := path
		if tail != "" {
			tail = tail[1:]
		}
		if m.pick(n.tails, tail) {
			return true
		}
	}
	return path == "" && len(n.ends) > 0 && m.pick(n.ends, "")
}

// pick returns whether one of the candidates (already in precedence order) matches, naming the
// captured parameters of the first one that does.
func (m *matcher) pick(list []*entry, tail string) bool {
	for _, e := range list {
		if !m.matchers(e) {
			continue
		}
		if !e.accepts(m.method, m.bit) {
			m.note405(e)
			continue
		}
		ps := m.ps[m.base:]
		for i, name := range e.names {
			ps[i].Name = name
		}
		if e.hasTail {
			m.ps = append(m.ps, policy.Param{Name: e.tail, Value: tail})
		}
		m.win = e
		return true
	}
	return false
}

func (e *entry) accepts(method string, bit uint16) bool {
	if e.anyMethod {
		return bit&explicitOnly == 0
	}
	return e.methods.has(method, bit)
}

func (m *matcher) matchers(e *entry) bool {
	for _, hv := range e.headers {
		ok := false
		for _, v := range m.h[hv.k] {
			if v == hv.v {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, q := range e.query {
		if !queryHas(m.rawQuery, q.k, q.v) {
			return false
		}
	}
	return true
}

func (m *matcher) note405(e *entry) {
	switch {
	case m.first405 == nil:
		m.first405 = e
	case !m.mixed:
		f := m.first405
		m.mixed = f.anyMethod != e.anyMethod || !f.anyMethod && !f.methods.equal(e.methods)
	}
	if e.anyMethod {
		m.bits405 |= anyBits
		return
	}
	m.bits405 |= e.methods.bits
	for _, o := range e.methods.other {
		if !slices.Contains(m.other405, o) {
			m.other405 = append(m.other405, o)
		}
	}
}

// allow returns the Allow value of a 405: precomputed when one method set is involved, which is
// the common case, so it does not allocate.
func (m *matcher) allow() string {
	if !m.mixed {
		return m.first405.allow
	}
	s := methodSet{bits: m.bits405, other: m.other405}
	return s.String()
}

// queryHas reports whether rawQuery has key=value, comparing with query unescaping applied on the
// fly so nothing is allocated. Pairs with a semicolon or a malformed escape are skipped, as
// net/url.ParseQuery skips them, so the router sees the query the upstream's Go server would.
func queryHas(rawQuery, key, value string) bool {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if unescapedEqual(k, key) && unescapedEqual(v, value) {
			return true
		}
	}
	return false
}

// unescapedEqual reports whether the query-escaped esc decodes to want.
func unescapedEqual(esc, want string) bool {
	j := 0
	for i := 0; i < len(esc); i++ {
		c := esc[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			if i+2 >= len(esc) || !isHex(esc[i+1]) || !isHex(esc[i+2]) {
				return false
			}
			c = unhex(esc[i+1])<<4 | unhex(esc[i+2])
			i += 2
		}
		if j >= len(want) || want[j] != c {
			return false
		}
		j++
	}
	return j == len(want)
}
