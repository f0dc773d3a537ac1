package router

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/policy"
)

// This file holds a brute-force reference of the package doc's rules: every route is checked on
// its own and the winner is picked with a direct comparator, independent of the trie. Property
// tests and FuzzMatch compare Table.Match against it.

type refRoute struct {
	Route
	tpl *Template
}

type refResult struct {
	idx    int
	params policy.Params
	allow  string
}

func refHostRank(patterns []string, host string) (int, bool) {
	if len(patterns) == 0 {
		return 0, true
	}
	best, ok := 0, false
	for _, p := range patterns {
		p = strings.TrimSuffix(strings.ToLower(p), ".")
		switch {
		case p == host:
			return 1 << 20, true
		case strings.HasPrefix(p, "*."):
			if len(host) > len(p)-1 && strings.HasSuffix(host, p[1:]) && best < len(p) {
				best, ok = len(p), true
			}
		}
	}
	return best, ok
}

// refPath matches a template against a path segment by segment.
func refPath(t *Template, path string) (policy.Params, bool) {
	if path == "" || path[0] != '/' {
		return nil, false
	}
	segs := strings.Split(path[1:], "/")
	var ps policy.Params
	for i, s := range t.segs {
		if s.kind == segTail {
			return append(ps, policy.Param{Name: s.text, Value: strings.Join(segs[min(i, len(segs)):], "/")}), true
		}
		if i >= len(segs) {
			return nil, false
		}
		switch s.kind {
		case segLiteral:
			if segs[i] != s.text {
				return nil, false
			}
		case segParam:
			if segs[i] == "" || segs[i] == "." || segs[i] == ".." {
				return nil, false
			}
			ps = append(ps, policy.Param{Name: s.text, Value: segs[i]})
		}
	}
	if len(segs) != len(t.segs) {
		return nil, false
	}
	return ps, true
}

func refComparePaths(a, b *Template) int {
	for i := 0; i < len(a.segs) && i < len(b.segs); i++ {
		if ka, kb := a.segs[i].kind, b.segs[i].kind; ka != kb {
			return int(ka) - int(kb)
		}
	}
	return len(a.segs) - len(b.segs)
}

func refMethods(r Route) []string {
	if len(r.Methods) == 0 {
		return nil
	}
	var out []string
	for _, m := range r.Methods {
		out = append(out, m)
		if m == "GET" {
			out = append(out, "HEAD")
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func refAccepts(r Route, method string) bool {
	if len(r.Methods) == 0 {
		return method != "CONNECT" && method != "TRACE"
	}
	return slices.Contains(refMethods(r), method)
}

func refMatchers(r Route, h http.Header, rawQuery string) bool {
	for k, v := range r.Headers {
		if !slices.Contains(h.Values(k), v) {
			return false
		}
	}
	q, _ := url.ParseQuery(rawQuery)
	for k, v := range r.Query {
		if !slices.Contains(q[k], v) {
			return false
		}
	}
	return true
}

func refMatch(routes []refRoute, method, host, path string, h http.Header, rawQuery string) refResult {
	best := -1
	var bestPs policy.Params
	bestRank := 0
	allow := map[string]bool{}
	for i, r := range routes {
		rank, ok := refHostRank(r.Hosts, host)
		if !ok {
			continue
		}
		ps, ok := refPath(r.tpl, path)
		if !ok || !refMatchers(r.Route, h, rawQuery) {
			continue
		}
		if !refAccepts(r.Route, method) {
			ms := refMethods(r.Route)
			if ms == nil {
				ms = []string{"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"}
			}
			for _, m := range ms {
				allow[m] = true
			}
			continue
		}
		if best < 0 || refBefore(r, rank, routes[best], bestRank) {
			best, bestPs, bestRank = i, ps, rank
		}
	}
	switch {
	case best >= 0:
		return refResult{idx: best, params: bestPs}
	case len(allow) > 0:
		var ms []string
		for m := range allow {
			ms = append(ms, m)
		}
		slices.Sort(ms)
		return refResult{idx: MethodNotAllowed, allow: strings.Join(ms, ", ")}
	}
	return refResult{idx: NotFound}
}

func refBefore(a refRoute, rankA int, b refRoute, rankB int) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if rankA != rankB {
		return rankA > rankB
	}
	if c := refComparePaths(a.tpl, b.tpl); c != 0 {
		return c > 0
	}
	if (len(a.Methods) > 0) != (len(b.Methods) > 0) {
		return len(a.Methods) > 0
	}
	if n, m := len(a.Headers)+len(a.Query), len(b.Headers)+len(b.Query); n != m {
		return n > m
	}
	return false // input order: a comes later
}

// refConflicts returns, for each route in conflict, the first earlier route it conflicts with.
func refConflicts(routes []refRoute) map[int]int {
	out := map[int]int{}
	for j := range routes {
		for i := 0; i < j; i++ {
			a, b := routes[i], routes[j]
			if a.Priority != b.Priority || a.tpl.shape() != b.tpl.shape() ||
				!refSharedHosts(a.Hosts, b.Hosts) || !refOverlap(a.Route, b.Route) ||
				!refSameMap(a.Headers, b.Headers, true) || !refSameMap(a.Query, b.Query, false) {
				continue
			}
			out[j] = i
			break
		}
	}
	return out
}

func refSharedHosts(a, b []string) bool {
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

func refOverlap(a, b Route) bool {
	if len(a.Methods) == 0 || len(b.Methods) == 0 {
		return len(a.Methods) == 0 && len(b.Methods) == 0
	}
	ma := refMethods(a)
	for _, m := range refMethods(b) {
		if slices.Contains(ma, m) {
			return true
		}
	}
	return false
}

func refSameMap(a, b map[string]string, header bool) bool {
	norm := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if header {
				k = http.CanonicalHeaderKey(k)
			}
			out[k] = v
		}
		return out
	}
	na, nb := norm(a), norm(b)
	if len(na) != len(nb) {
		return false
	}
	for k, v := range na {
		if w, ok := nb[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// checkAgainstReference compiles routes and, when they compile, checks Match against refMatch for
// one request. It reports whether the routes compiled.
func checkAgainstReference(t *testing.T, routes []Route, method, host, path string, h http.Header, rawQuery string) bool {
	t.Helper()
	refs := make([]refRoute, 0, len(routes))
	valid := true
	for _, r := range routes {
		tpl, err := ParseTemplate(r.Path)
		if err != nil {
			valid = false
			break
		}
		refs = append(refs, refRoute{Route: r, tpl: tpl})
	}
	tb, err := Compile(routes)
	if errs, ok := err.(Errors); ok {
		for _, e := range errs {
			if e.Other < 0 {
				return false // an invalid route is left out of conflict detection
			}
		}
	}
	if valid {
		want := refConflicts(refs)
		got := map[int]int{}
		if errs, ok := err.(Errors); ok {
			for _, e := range errs {
				if e.Other >= 0 {
					got[e.Index] = e.Other
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("conflicts of %+v: got %v, want %v (err %v)", routes, got, want, err)
		}
	}
	if err != nil {
		return false
	}
	want := refMatch(refs, method, host, path, h, rawQuery)
	prefix := policy.Params{{Name: "pre", Value: "x"}}
	idx, ps, allow := tb.Match(method, host, path, h, rawQuery, prefix)
	if idx != want.idx || allow != want.allow {
		t.Fatalf("%s %s%s?%s %v over %+v:\n got %d %v %q\nwant %d %v %q", method, host, path, rawQuery, h, routes,
			idx, ps, allow, want.idx, want.params, want.allow)
	}
	if len(ps) == 0 || ps[0] != prefix[0] {
		t.Fatalf("params given were not kept: %v", ps)
	}
	if idx >= 0 && !slices.Equal(ps[1:], want.params) && !(len(ps) == 1 && len(want.params) == 0) {
		t.Fatalf("%s %s%s over %+v: params %v, want %v", method, host, path, routes, ps[1:], want.params)
	}
	if idx < 0 && len(ps) != 1 {
		t.Fatalf("a miss appended params: %v", ps)
	}
	for _, p := range ps[1:] {
		if p.Value == "." || p.Value == ".." || strings.Contains("/"+p.Value+"/", "/../") || strings.Contains("/"+p.Value+"/", "/./") {
			t.Fatalf("param %s=%q has a dot-segment", p.Name, p.Value)
		}
	}
	return true
}

func randomRoute(r *rand.Rand) Route {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	var rt Route
	switch r.IntN(5) {
	case 0:
		rt.Hosts = []string{"x.com"}
	case 1:
		rt.Hosts = []string{"*.x.com"}
	case 2:
		rt.Hosts = []string{pick("*.a.x.com", "a.x.com", "y.com"), pick("x.com", "*.x.com")}
	}
	var p strings.Builder
	n := r.IntN(4)
	for i := 0; i < n; i++ {
		p.WriteString("/" + pick("a", "b", "", "{p"+strconv.Itoa(i)+"}", "{q"+strconv.Itoa(i)+"}"))
	}
	if r.IntN(3) == 0 {
		p.WriteString("/{rest...}")
	} else if n == 0 || r.IntN(5) == 0 {
		p.WriteString("/")
	}
	rt.Path = p.String()
	switch r.IntN(4) {
	case 0:
		rt.Methods = []string{"GET"}
	case 1:
		rt.Methods = []string{pick("POST", "HEAD", "CONNECT", "PURGE")}
	case 2:
		rt.Methods = []string{"GET", pick("POST", "PURGE")}
	}
	if r.IntN(4) == 0 {
		rt.Headers = map[string]string{pick("x-a", "X-A"): pick("1", "2")}
	}
	if r.IntN(4) == 0 {
		rt.Query = map[string]string{"q": pick("1", "a b")}
	}
	if r.IntN(5) == 0 {
		rt.Priority = r.IntN(3) - 1
	}
	return rt
}

func randomRequest(r *rand.Rand) (method, host, path string, h http.Header, rawQuery string) {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	method = pick("GET", "HEAD", "POST", "CONNECT", "TRACE", "PURGE", "DELETE")
	host = pick("x.com", "a.x.com", "b.a.x.com", "y.com", "com")
	var p strings.Builder
	for i, n := 0, r.IntN(5); i < n; i++ {
		p.WriteString("/" + pick("a", "b", "", "c", "a"))
	}
	path = p.String()
	if path == "" || r.IntN(4) == 0 {
		path += "/"
	}
	switch r.IntN(3) {
	case 0:
		h = http.Header{"X-A": {pick("1", "2")}}
	case 1:
		h = http.Header{"X-A": {"3", pick("1", "2")}}
	}
	rawQuery = pick("", "q=1", "q=2&q=1", "q=%31", "q=1;x=2", "q=a+b", "q=a%20b", "q=%zz&q=1", "%71=1")
	return
}

func TestMatchAgainstReference(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	compiled := 0
	for range 3000 {
		routes := make([]Route, 1+r.IntN(8))
		for i := range routes {
			routes[i] = randomRoute(r)
		}
		for range 20 {
			method, host, path, h, q := randomRequest(r)
			if !checkAgainstReference(t, routes, method, host, path, h, q) {
				break
			}
			compiled++
		}
	}
	if compiled < 1000 {
		t.Fatalf("only %d route sets compiled: the generator makes too many conflicts", compiled)
	}
}
