// Package router matches requests to routes by host, path template, method, headers and query.
//
// Precedence. Among the routes that match a request, the winner is decided by this total order:
//
//  1. priority: higher first;
//  2. host: an exact host, then wildcards (a longer suffix first), then routes without hosts;
//  3. path, segment by segment from the left: a literal beats a {param} beats a {tail...}; when
//     one template is a prefix of the other, the longer one wins;
//  4. routes that list methods beat routes that do not;
//  5. more header and query matchers first;
//  6. the order routes were given in.
//
// Only routes that cannot be told apart (same priority, a shared host pattern, the same path
// shape, overlapping methods, identical header and query matchers) are rejected by Compile.
//
// Matching runs on the normalized escaped path and is case-sensitive. Hosts are matched
// lowercase without a port. Wildcards ("*.example.com") match any depth of subdomain but not the
// bare domain. Routes without methods match every method except CONNECT and TRACE, which must be
// listed explicitly. GET implies HEAD.
package router

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/limen-gateway/limen/policy"
)

// Route is what the router needs to know about a route.
type Route struct {
	Hosts    []string
	Path     string
	Methods  []string
	Headers  map[string]string
	Query    map[string]string
	Priority int
}

// Match results that are not a route index.
const (
	NotFound         = -1
	MethodNotAllowed = -2
)

// RouteError is one problem found by Compile.
type RouteError struct {
	Index int    // the route with the problem
	Other int    // the route it conflicts with, or -1
	Field string // "match.path", "match.hosts", ...
	Msg   string
}

func (e *RouteError) Error() string {
	if e.Other >= 0 {
		return fmt.Sprintf("route %d conflicts with route %d: %s", e.Index, e.Other, e.Msg)
	}
	return fmt.Sprintf("route %d: %s: %s", e.Index, e.Field, e.Msg)
}

// Errors is every problem Compile found.
type Errors []*RouteError

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

type kv struct{ k, v string }

type entry struct {
	idx       int
	priority  int
	hostRank  int
	tpl       *Template
	methods   methodSet
	anyMethod bool
	headers   []kv
	query     []kv
}

// Table is a compiled, immutable set of routes.
type Table struct {
	exact    map[string]*trie
	wildcard map[string]*trie // by suffix: ".example.com"
	any      *trie
	entries  []*entry
}

type trie struct{ root *node }

type node struct {
	static map[string]*node
	param  *node
	tails  []*entry // routes whose template ends with a tail here
	ends   []*entry // routes whose template ends exactly here
}

const exactHostRank = 1 << 30

// Compile builds a table, or returns Errors naming every bad template and conflict.
func Compile(routes []Route) (*Table, error) {
	t := &Table{exact: map[string]*trie{}, wildcard: map[string]*trie{}, any: &trie{root: &node{}}}
	var errs Errors
	for i, r := range routes {
		path := r.Path
		if path == "" {
			path = "/{path...}"
		}
		tpl, err := ParseTemplate(path)
		if err != nil {
			errs = append(errs, &RouteError{Index: i, Other: -1, Field: "match.path", Msg: err.Error()})
			continue
		}
		e := &entry{idx: i, priority: r.Priority, tpl: tpl}
		if len(r.Methods) == 0 {
			e.anyMethod = true
		}
		for _, m := range r.Methods {
			e.methods.add(strings.ToUpper(m))
			if strings.EqualFold(m, http.MethodGet) {
				e.methods.add(http.MethodHead)
			}
		}
		for k, v := range r.Headers {
			e.headers = append(e.headers, kv{http.CanonicalHeaderKey(k), v})
		}
		for k, v := range r.Query {
			e.query = append(e.query, kv{k, v})
		}
		sort.Slice(e.headers, func(a, b int) bool { return e.headers[a].k < e.headers[b].k })
		sort.Slice(e.query, func(a, b int) bool { return e.query[a].k < e.query[b].k })
		t.entries = append(t.entries, e)

		if len(r.Hosts) == 0 {
			insert(t.any, e, 0)
			continue
		}
		for _, h := range r.Hosts {
			h = strings.ToLower(strings.TrimSuffix(h, "."))
			if strings.HasPrefix(h, "*.") {
				suffix := h[1:]
				g := t.wildcard[suffix]
				if g == nil {
					g = &trie{root: &node{}}
					t.wildcard[suffix] = g
				}
				insert(g, e, len(suffix))
				continue
			}
			if strings.Contains(h, "*") {
				errs = append(errs, &RouteError{Index: i, Other: -1, Field: "match.hosts", Msg: fmt.Sprintf("host %q: a wildcard must be a leading \"*.\"", h)})
				continue
			}
			tr := t.exact[h]
			if tr == nil {
				tr = &trie{root: &node{}}
				t.exact[h] = tr
			}
			insert(tr, e, exactHostRank)
		}
	}
	errs = append(errs, conflicts(routes, t.entries)...)
	if len(errs) > 0 {
		sort.SliceStable(errs, func(a, b int) bool { return errs[a].Index < errs[b].Index })
		return nil, errs
	}
	return t, nil
}

// insert adds e under the trie. A route listed under several hosts gets one entry per host so its
// host rank is right in each group.
func insert(tr *trie, e *entry, hostRank int) {
	if e.hostRank != 0 && e.hostRank != hostRank {
		c := *e
		e = &c
	}
	e.hostRank = hostRank
	n := tr.root
	for _, s := range e.tpl.segs {
		switch s.kind {
		case segLiteral:
			if n.static == nil {
				n.static = map[string]*node{}
			}
			child := n.static[s.text]
			if child == nil {
				child = &node{}
				n.static[s.text] = child
			}
			n = child
		case segParam:
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
		case segTail:
			n.tails = insertSorted(n.tails, e)
			return
		}
	}
	n.ends = insertSorted(n.ends, e)
}

func insertSorted(list []*entry, e *entry) []*entry {
	i := sort.Search(len(list), func(i int) bool { return precedes(e, list[i]) })
	return slices.Insert(list, i, e)
}

// precedes reports whether a wins over b when both match a request.
func precedes(a, b *entry) bool {
	if a.priority != b.priority {
		return a.priority > b.priority
	}
	if a.hostRank != b.hostRank {
		return a.hostRank > b.hostRank
	}
	if c := comparePaths(a.tpl, b.tpl); c != 0 {
		return c > 0
	}
	if a.anyMethod != b.anyMethod {
		return !a.anyMethod
	}
	if na, nb := len(a.headers)+len(a.query), len(b.headers)+len(b.query); na != nb {
		return na > nb
	}
	return a.idx < b.idx
}

// comparePaths returns >0 when a's path is more specific than b's.
func comparePaths(a, b *Template) int {
	for i := 0; i < len(a.segs) && i < len(b.segs); i++ {
		if ka, kb := a.segs[i].kind, b.segs[i].kind; ka != kb {
			return int(ka) - int(kb)
		}
	}
	return len(a.segs) - len(b.segs)
}

// conflicts finds pairs of routes no request could tell apart.
func conflicts(routes []Route, entries []*entry) Errors {
	var errs Errors
	byShape := map[string][]*entry{}
	for _, e := range entries {
		k := e.tpl.shape()
		byShape[k] = append(byShape[k], e)
	}
	for _, group := range byShape {
		for i := 1; i < len(group); i++ {
			for j := 0; j < i; j++ {
				a, b := group[j], group[i]
				if a.priority != b.priority || !sharedHosts(routes[a.idx].Hosts, routes[b.idx].Hosts) ||
					!a.methods.overlaps(b.methods, a.anyMethod, b.anyMethod) ||
					!slices.Equal(a.headers, b.headers) || !slices.Equal(a.query, b.query) {
					continue
				}
				errs = append(errs, &RouteError{Index: b.idx, Other: a.idx, Field: "match",
					Msg: fmt.Sprintf("both match the same requests (path %s); set a priority or a distinguishing matcher", b.tpl.raw)})
			}
		}
	}
	return errs
}

func sharedHosts(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == 0 && len(b) == 0
	}
	for _, x := range a {
		for _, y := range b {
			if strings.EqualFold(strings.TrimSuffix(x, "."), strings.TrimSuffix(y, ".")) {
				return true
			}
		}
	}
	return false
}

// matchState carries one lookup; it lives on the stack.
type matchState struct {
	method   string
	h        http.Header
	rawQuery string
	work     [16]policy.Param
	nwork    int
	best     *entry
	bestPs   [16]policy.Param
	nbest    int
	pathHit  bool // some route matched everything but the method
}

// Match finds the route for a request. path is the normalized escaped path and host the
// normalized host. Params are appended to params[:0]. On MethodNotAllowed, allow lists the
// methods the matching routes accept.
func (t *Table) Match(method, host, path string, h http.Header, rawQuery string, params policy.Params) (int, policy.Params, string) {
	m := matchState{method: method, h: h, rawQuery: rawQuery}
	if tr := t.exact[host]; tr != nil {
		m.walk(tr.root, path)
	}
	if len(t.wildcard) > 0 {
		// Every proper suffix starting at a dot, longest first: O(labels) map lookups.
		for i := strings.IndexByte(host, '.'); i > 0; {
			if g := t.wildcard[host[i:]]; g != nil {
				m.walk(g.root, path)
			}
			j := strings.IndexByte(host[i+1:], '.')
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	m.walk(t.any.root, path)
	if m.best == nil {
		if m.pathHit {
			return MethodNotAllowed, params[:0], t.allow(host, path, h, rawQuery)
		}
		return NotFound, params[:0], ""
	}
	out := append(params[:0], m.bestPs[:m.nbest]...)
	return m.best.idx, out, ""
}

func (m *matchState) push(name, value string) bool {
	if m.nwork == len(m.work) {
		return false
	}
	m.work[m.nwork] = policy.Param{Name: name, Value: value}
	m.nwork++
	return true
}

// walk explores every branch that can match path below n; path is "" or starts with "/".
func (m *matchState) walk(n *node, path string) {
	if len(n.tails) > 0 {
		tail := ""
		if path != "" {
			tail = path[1:]
		}
		m.consider(n.tails, tail, true)
	}
	if path == "" {
		m.consider(n.ends, "", false)
		return
	}
	rest := path[1:]
	seg := rest
	next := ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		seg, next = rest[:i], rest[i:]
	}
	if n.static != nil {
		if child := n.static[seg]; child != nil {
			m.walk(child, next)
		}
	}
	if n.param != nil && seg != "" && seg != "." && seg != ".." {
		if m.push("", seg) {
			m.walk(n.param, next)
			m.nwork--
		}
	}
}

// consider checks the entries ending at a node (already in precedence order) and keeps the best.
func (m *matchState) consider(list []*entry, tail string, isTail bool) {
	for _, e := range list {
		if m.best != nil && !precedes(e, m.best) {
			return // the list is sorted: nothing later can win either
		}
		if !m.matchers(e) {
			continue
		}
		if !e.methodAllowed(m.method) {
			m.pathHit = true
			continue
		}
		m.best = e
		m.record(e, tail, isTail)
		return
	}
}

// record saves the params of the new best entry, naming the captured values.
func (m *matchState) record(e *entry, tail string, isTail bool) {
	m.nbest = 0
	k := 0
	for _, s := range e.tpl.segs {
		switch s.kind {
		case segParam:
			if k < m.nwork && m.nbest < len(m.bestPs) {
				m.bestPs[m.nbest] = policy.Param{Name: s.text, Value: m.work[k].Value}
				m.nbest++
			}
			k++
		case segTail:
			if isTail && m.nbest < len(m.bestPs) {
				m.bestPs[m.nbest] = policy.Param{Name: s.text, Value: tail}
				m.nbest++
			}
		}
	}
}

func (m *matchState) matchers(e *entry) bool {
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

// queryHas reports whether rawQuery has key=value, decoding only pairs that need it.
func queryHas(rawQuery, key, value string) bool {
	for rawQuery != "" {
		var pair string
		if i := strings.IndexByte(rawQuery, '&'); i >= 0 {
			pair, rawQuery = rawQuery[:i], rawQuery[i+1:]
		} else {
			pair, rawQuery = rawQuery, ""
		}
		k, v, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			dk, err := url.QueryUnescape(k)
			if err != nil {
				continue
			}
			k = dk
		}
		if k != key {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			dv, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			v = dv
		}
		if v == value {
			return true
		}
	}
	return false
}

// allow collects the methods of every route that matches the request except for its method.
// It runs only on the 405 path, so it may allocate.
func (t *Table) allow(host, path string, h http.Header, rawQuery string) string {
	set := map[string]bool{}
	for _, e := range t.entries {
		if !t.hostMatches(e, host) || !pathMatches(e.tpl, path) {
			continue
		}
		m := matchState{h: h, rawQuery: rawQuery}
		if !m.matchers(e) {
			continue
		}
		for _, meth := range e.methods.list() {
			set[meth] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func (t *Table) hostMatches(e *entry, host string) bool {
	found := false
	walkAll(t.any.root, func(x *entry) { found = found || x.idx == e.idx })
	if found {
		return true
	}
	if tr := t.exact[host]; tr != nil {
		walkAll(tr.root, func(x *entry) { found = found || x.idx == e.idx })
	}
	for suffix, g := range t.wildcard {
		if len(host) > len(suffix) && strings.HasSuffix(host, suffix) {
			walkAll(g.root, func(x *entry) { found = found || x.idx == e.idx })
		}
	}
	return found
}

func walkAll(n *node, f func(*entry)) {
	for _, e := range n.ends {
		f(e)
	}
	for _, e := range n.tails {
		f(e)
	}
	for _, c := range n.static {
		walkAll(c, f)
	}
	if n.param != nil {
		walkAll(n.param, f)
	}
}

// pathMatches matches one template against a path, without the trie.
func pathMatches(t *Template, path string) bool {
	for i, s := range t.segs {
		if s.kind == segTail {
			return path == "" || path[0] == '/'
		}
		if path == "" || path[0] != '/' {
			return false
		}
		rest := path[1:]
		seg, next := rest, ""
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			seg, next = rest[:j], rest[j:]
		}
		switch s.kind {
		case segLiteral:
			if seg != s.text {
				return false
			}
		case segParam:
			if seg == "" || seg == "." || seg == ".." {
				return false
			}
		}
		path = next
		_ = i
	}
	return path == ""
}
