// Package router matches requests to routes by host, path template, method, headers and query.
//
// # Matching
//
// Paths are matched on the normalized escaped path the server produces (httpx.NormalizePath),
// case-sensitively and on segment boundaries only: "/api" never matches "/apifoo". A literal
// segment matches itself; "{name}" matches exactly one segment that is not empty, "." or "..";
// a last "{name...}" matches zero or more remaining segments, so "/files/{p...}" matches "/files"
// (p = ""), "/files/" (p = "") and "/files/a/b" (p = "a/b"): its value is the rest of the path
// without the leading slash. A trailing slash is significant otherwise: "/users/{id}" does not
// match "/users/1/".
//
// Hosts are matched against the normalized host (lowercase, no port, no trailing dot). A pattern
// is an exact name or "*.example.com", which matches any depth of subdomain (a.example.com,
// a.b.example.com) but not example.com itself. A route without hosts matches every host.
//
// Methods are case-sensitive tokens. GET implies HEAD. A route without methods matches every
// method except CONNECT and TRACE, which match only routes that list them.
//
// Headers match when any of the request's values for the (canonicalized) name equals the wanted
// value exactly; query parameters when any value of the key equals it after query unescaping.
// The query is scanned only for candidates that have query matchers, without allocating.
//
// # Precedence
//
// Among the routes that match a request the winner is decided by this total order:
//
//  1. priority: higher first;
//  2. host: an exact host, then wildcards (a longer suffix first), then routes without hosts;
//  3. path, segment by segment from the left: a literal beats a {param} beats a {tail...}; when
//     one template is a prefix of the other, the longer one (more segments) wins, so
//     "/files/{p...}" wins over "/files" for the request "/files" (give "/files" a priority to
//     prefer it);
//  4. routes that list methods beat routes that do not;
//  5. more header and query matchers first;
//  6. the order routes were given in.
//
// Compile rejects only routes that no request could tell apart: the same priority, a host
// pattern in common (or no hosts on either), the same path shape (the same literals, parameters
// in the same places, the same tail; parameter names do not count), overlapping methods (both
// without methods, or a method both list, HEAD implied by GET included) and identical header and
// query matchers. A route with methods and one without never conflict: rule 4 orders them.
//
// # 405
//
// When no route matches but some route matches the host, path, headers and query, Match returns
// MethodNotAllowed and the Allow value: the sorted union of those routes' methods, HEAD added
// where GET is listed; a route without methods contributes the standard methods but CONNECT and
// TRACE. OPTIONS is never added on its own.
package router

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/limen-gateway/limen/internal/httpx"
)

// Route is what the router needs to know about a route.
type Route struct {
	// Hosts are exact names or "*.example.com" wildcards; every host when empty.
	Hosts []string
	// Path is a path template (see ParseTemplate).
	Path string
	// Methods are uppercase method tokens; every method but CONNECT and TRACE when empty.
	Methods []string
	// Headers maps header names to the exact value one of the request's values must have.
	Headers map[string]string
	// Query maps query keys to the exact (unescaped) value one of the key's values must have.
	Query map[string]string
	// Priority orders routes before every other rule: higher first.
	Priority int
}

// Match results that are not a route index.
const (
	NotFound         = -1
	MethodNotAllowed = -2
)

// RouteError is one problem Compile found.
type RouteError struct {
	Index int    // the route with the problem, an index into the slice given to Compile
	Other int    // the route it conflicts with, or -1
	Field string // "match", "match.path", "match.hosts", "match.methods", "match.headers", "match.query"
	Msg   string
}

func (e *RouteError) Error() string {
	if e.Other >= 0 {
		return fmt.Sprintf("route %d conflicts with route %d: %s", e.Index, e.Other, e.Msg)
	}
	return fmt.Sprintf("route %d: %s: %s", e.Index, e.Field, e.Msg)
}

// Errors is every problem Compile found, ordered by route.
type Errors []*RouteError

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

type kv struct{ k, v string }

// entry is a compiled route.
type entry struct {
	idx       int
	priority  int
	tpl       *Template
	names     []string // the {name} parameters in template order, the tail excluded
	tail      string   // the tail's name, when hasTail
	hasTail   bool
	anyMethod bool
	methods   methodSet
	headers   []kv // sorted by name
	query     []kv // sorted by key
	allow     string
}

// before orders the entries that end at the same trie node (same priority, host group and path
// shape) by rules 4 to 6.
func (e *entry) before(o *entry) bool {
	if e.anyMethod != o.anyMethod {
		return !e.anyMethod
	}
	if n, m := len(e.headers)+len(e.query), len(o.headers)+len(o.query); n != m {
		return n > m
	}
	return e.idx < o.idx
}

// Table is a compiled, immutable set of routes, safe for concurrent use.
//
// Routes are grouped by host pattern and priority; each group is a segment trie whose nodes have
// static children, a parameter child, and the routes that end there or take the rest as a tail,
// already in precedence order. Match visits the groups that can apply to the host in precedence
// order and walks each trie depth-first (static, then parameter, then tail, then end), which is
// rule 3's order, so the first route that matches wins and the walk stops.
type Table struct {
	exact   map[string][]*group // by host, each list by priority, highest first
	wild    map[string][]*group // by suffix (".example.com")
	any     []*group
	wildMin int // shortest and longest wildcard suffix, to skip lookups that cannot hit
	wildMax int
}

type group struct {
	priority int
	root     *node
}

// smallFanout is the most static children kept in a slice, scanned linearly; more go in a map.
const smallFanout = 8

type node struct {
	keys   []string
	kids   []*node
	static map[string]*node
	param  *node
	tails  []*entry // routes whose template ends with a tail below this node
	ends   []*entry // routes whose template ends exactly here
}

func (n *node) child(seg string) *node {
	if n.static != nil {
		return n.static[seg]
	}
	for i, k := range n.keys {
		if k == seg {
			return n.kids[i]
		}
	}
	return nil
}

// Compile builds a table, or returns Errors naming every invalid route and every conflict.
func Compile(routes []Route) (*Table, error) {
	b := builder{
		exact: map[string]map[int]*group{},
		wild:  map[string]map[int]*group{},
		any:   map[int]*group{},
		seen:  map[string][]*entry{},
	}
	for i, r := range routes {
		e, hosts, errs := newEntry(i, r)
		if len(errs) > 0 {
			b.errs = append(b.errs, errs...)
			continue
		}
		b.conflicts(e, hosts)
		if len(hosts) == 0 {
			b.insert(b.any, e)
		}
		for _, h := range hosts {
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				b.insert(b.groups(b.wild, suffix), e)
			} else {
				b.insert(b.groups(b.exact, h), e)
			}
		}
	}
	if len(b.errs) > 0 {
		slices.SortStableFunc(b.errs, func(x, y *RouteError) int { return x.Index - y.Index })
		return nil, b.errs
	}
	t := &Table{exact: make(map[string][]*group, len(b.exact)), wild: make(map[string][]*group, len(b.wild))}
	for h, gs := range b.exact {
		t.exact[h] = freezeGroups(gs)
	}
	for s, gs := range b.wild {
		t.wild[s] = freezeGroups(gs)
		if t.wildMin == 0 || len(s) < t.wildMin {
			t.wildMin = len(s)
		}
		t.wildMax = max(t.wildMax, len(s))
	}
	t.any = freezeGroups(b.any)
	return t, nil
}

type builder struct {
	exact map[string]map[int]*group
	wild  map[string]map[int]*group
	any   map[int]*group
	seen  map[string][]*entry // conflict buckets: priority, host pattern, shape, matchers
	errs  Errors
}

func (b *builder) groups(m map[string]map[int]*group, key string) map[int]*group {
	gs := m[key]
	if gs == nil {
		gs = map[int]*group{}
		m[key] = gs
	}
	return gs
}

func (b *builder) insert(gs map[int]*group, e *entry) {
	g := gs[e.priority]
	if g == nil {
		g = &group{priority: e.priority, root: &node{}}
		gs[e.priority] = g
	}
	n := g.root
	for _, s := range e.tpl.segs {
		switch s.kind {
		case segLiteral:
			if n.static == nil {
				n.static = map[string]*node{}
			}
			c := n.static[s.text]
			if c == nil {
				c = &node{}
				n.static[s.text] = c
			}
			n = c
		case segParam:
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
		case segTail:
			n.tails = append(n.tails, e)
			return
		}
	}
	n.ends = append(n.ends, e)
}

func freezeGroups(gs map[int]*group) []*group {
	out := make([]*group, 0, len(gs))
	for _, g := range gs {
		freeze(g.root)
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *group) int { return b.priority - a.priority })
	return out
}

// freeze sorts the candidates of every node and moves small static fan-outs into slices.
func freeze(n *node) {
	slices.SortFunc(n.ends, cmpEntries)
	slices.SortFunc(n.tails, cmpEntries)
	if len(n.static) > 0 && len(n.static) <= smallFanout {
		for k := range n.static {
			n.keys = append(n.keys, k)
		}
		slices.Sort(n.keys)
		for _, k := range n.keys {
			n.kids = append(n.kids, n.static[k])
		}
		n.static = nil
	}
	for _, c := range n.static {
		freeze(c)
	}
	for _, c := range n.kids {
		freeze(c)
	}
	if n.param != nil {
		freeze(n.param)
	}
}

func cmpEntries(a, b *entry) int {
	switch {
	case a.before(b):
		return -1
	case b.before(a):
		return 1
	}
	return 0
}

// newEntry validates and compiles one route, returning its normalized host patterns.
func newEntry(i int, r Route) (*entry, []string, Errors) {
	var errs Errors
	fail := func(field, format string, args ...any) {
		errs = append(errs, &RouteError{Index: i, Other: -1, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	e := &entry{idx: i, priority: r.Priority}
	if r.Path == "" {
		fail("match.path", "a path template is required (\"/{path...}\" matches every path)")
	} else if tpl, err := ParseTemplate(r.Path); err != nil {
		fail("match.path", "%v", err)
	} else {
		e.tpl = tpl
		for _, s := range tpl.segs {
			switch s.kind {
			case segParam:
				e.names = append(e.names, s.text)
			case segTail:
				e.tail, e.hasTail = s.text, true
			}
		}
	}

	var hosts []string
	for _, h := range r.Hosts {
		p, err := hostPattern(h)
		if err != nil {
			fail("match.hosts", "%v", err)
			continue
		}
		if !slices.Contains(hosts, p) {
			hosts = append(hosts, p)
		}
	}

	e.anyMethod = len(r.Methods) == 0
	for _, m := range r.Methods {
		if !validMethod(m) {
			fail("match.methods", "%q is not a method: methods are case-sensitive tokens such as GET", m)
			continue
		}
		e.methods.add(m)
		if m == http.MethodGet {
			e.methods.add(http.MethodHead) // RFC 9110 section 9.3.2: HEAD is GET without the body
		}
	}
	if e.anyMethod {
		e.allow = methodSet{bits: anyBits}.String()
	} else {
		e.allow = e.methods.String()
	}

	for k, v := range r.Headers {
		if !httpx.ValidToken(k) {
			fail("match.headers", "%q is not a header name", k)
			continue
		}
		e.headers = append(e.headers, kv{http.CanonicalHeaderKey(k), v})
	}
	slices.SortFunc(e.headers, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	for j := 1; j < len(e.headers); j++ {
		if e.headers[j].k == e.headers[j-1].k {
			fail("match.headers", "header %s is listed twice (names are case-insensitive)", e.headers[j].k)
		}
	}
	for k, v := range r.Query {
		if k == "" {
			fail("match.query", "a query key may not be empty")
			continue
		}
		e.query = append(e.query, kv{k, v})
	}
	slices.SortFunc(e.query, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	return e, hosts, errs
}

// hostPattern validates a host pattern and returns it lowercase without a trailing dot, the form
// the server normalizes request hosts to.
func hostPattern(h string) (string, error) {
	p := strings.TrimSuffix(strings.ToLower(h), ".")
	name := strings.TrimPrefix(p, "*.")
	if name == "" {
		return "", fmt.Errorf("host %q is empty", h)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == ':':
		case c == '.':
			if i == 0 || name[i-1] == '.' {
				return "", fmt.Errorf("host %q has an empty label", h)
			}
		case c == '*':
			return "", fmt.Errorf("host %q: a wildcard is only a leading \"*.\" (*.example.com)", h)
		default:
			return "", fmt.Errorf("host %q contains %q: write a host name without scheme, port or path", h, c)
		}
	}
	return p, nil
}

// conflicts records the first earlier route that e cannot be told apart from. Routes land in
// the same bucket when they share priority, a host pattern, path shape and matchers, so only
// their methods remain to compare.
func (b *builder) conflicts(e *entry, hosts []string) {
	base := strconv.Itoa(e.priority) + "\x00" + e.tpl.shape() + "\x00" + matchersKey(e) + "\x00"
	keys := hosts
	if len(keys) == 0 {
		keys = []string{""}
	}
	var other *entry
	var common methodSet
	for _, h := range keys {
		k := base + h
		for _, o := range b.seen[k] {
			c, ok := overlap(e, o)
			if ok && (other == nil || o.idx < other.idx) {
				other, common = o, c
			}
		}
		b.seen[k] = append(b.seen[k], e)
	}
	if other == nil {
		return
	}
	hostsPart := "same hosts"
	if len(hosts) == 0 {
		hostsPart = "any host"
	}
	methodsPart := "any method"
	if !e.anyMethod {
		methodsPart = "methods " + strings.Join(common.list(), ",")
	}
	b.errs = append(b.errs, &RouteError{Index: e.idx, Other: other.idx, Field: "match",
		Msg: fmt.Sprintf("both match the same requests (%s, path %s, %s); set priority or a distinguishing matcher",
			hostsPart, e.tpl.raw, methodsPart)})
}

// overlap reports whether two routes accept a method in common, and which. A route without
// methods overlaps only another one without: rule 4 orders a route with methods before it.
func overlap(a, b *entry) (methodSet, bool) {
	if a.anyMethod || b.anyMethod {
		return methodSet{}, a.anyMethod && b.anyMethod
	}
	c := a.methods.intersect(b.methods)
	return c, !c.empty()
}

func matchersKey(e *entry) string {
	var sb strings.Builder
	for _, h := range e.headers {
		sb.WriteString(strconv.Quote(h.k) + ":" + strconv.Quote(h.v) + ";")
	}
	sb.WriteByte('?')
	for _, q := range e.query {
		sb.WriteString(strconv.Quote(q.k) + "=" + strconv.Quote(q.v) + ";")
	}
	return sb.String()
}
