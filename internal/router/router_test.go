package router

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/policy"
)

func mustCompile(t testing.TB, routes []Route) *Table {
	t.Helper()
	tb, err := Compile(routes)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

type request struct {
	method, host, path, query string
	hdr                       http.Header
}

func get(path string) request { return request{method: "GET", path: path} }

func fmtParams(ps policy.Params) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, p.Name+"="+p.Value)
	}
	return strings.Join(parts, ",")
}

// matchCase is one request against a route set: the route index it must pick (or NotFound,
// MethodNotAllowed), the params it captures ("name=value,..."), and the Allow value of a 405.
type matchCase struct {
	name   string
	routes []Route
	req    request
	want   int
	params string
	allow  string
}

func runMatchCases(t *testing.T, cases []matchCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tb := mustCompile(t, c.routes)
			r := c.req
			if r.method == "" {
				r.method = "GET"
			}
			idx, ps, allow := tb.Match(r.method, r.host, r.path, r.hdr, r.query, nil)
			if idx != c.want || fmtParams(ps) != c.params || allow != c.allow {
				t.Fatalf("%s %s%s?%s -> %d [%s] %q, want %d [%s] %q", r.method, r.host, r.path, r.query,
					idx, fmtParams(ps), allow, c.want, c.params, c.allow)
			}
		})
	}
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	hosts := func(h ...string) []string { return h }
	runMatchCases(t, []matchCase{
		// Rule 1: priority beats everything after it.
		{name: "priority beats host", routes: []Route{{Hosts: hosts("a.com"), Path: "/x"}, {Path: "/x", Priority: 1}},
			req: request{method: "GET", host: "a.com", path: "/x"}, want: 1},
		{name: "priority beats literal path", routes: []Route{{Path: "/users/me"}, {Path: "/users/{id}", Priority: 5}},
			req: get("/users/me"), want: 1, params: "id=me"},
		{name: "negative priority loses to default", routes: []Route{{Path: "/{p...}"}, {Path: "/x", Priority: -1}},
			req: get("/x"), want: 0, params: "p=x"},
		// Rule 2: exact host, then longer wildcard, then wildcard, then no hosts.
		{name: "exact host beats wildcard", routes: []Route{{Hosts: hosts("*.example.com"), Path: "/w"}, {Hosts: hosts("api.example.com"), Path: "/w"}},
			req: request{method: "GET", host: "api.example.com", path: "/w"}, want: 1},
		{name: "longer wildcard beats shorter", routes: []Route{{Hosts: hosts("*.example.com"), Path: "/w"}, {Hosts: hosts("*.eu.example.com"), Path: "/w"}},
			req: request{method: "GET", host: "a.eu.example.com", path: "/w"}, want: 1},
		{name: "wildcard beats no hosts", routes: []Route{{Path: "/w"}, {Hosts: hosts("*.example.com"), Path: "/w"}},
			req: request{method: "GET", host: "a.example.com", path: "/w"}, want: 1},
		{name: "host beats literal path", routes: []Route{{Path: "/users/me"}, {Hosts: hosts("a.com"), Path: "/users/{id}"}},
			req: request{method: "GET", host: "a.com", path: "/users/me"}, want: 1, params: "id=me"},
		{name: "multi-host route ranks by the host that matched", routes: []Route{{Hosts: hosts("*.example.com"), Path: "/w"}, {Hosts: hosts("*.com", "api.example.com"), Path: "/w"}},
			req: request{method: "GET", host: "api.example.com", path: "/w"}, want: 1},
		{name: "falls back to no-host route", routes: []Route{{Hosts: hosts("a.com"), Path: "/w"}, {Path: "/w"}},
			req: request{method: "GET", host: "b.com", path: "/w"}, want: 1},
		// Rule 3: literal beats param beats tail, from the left; longer template first.
		{name: "literal beats param", routes: []Route{{Path: "/users/{id}"}, {Path: "/users/me"}},
			req: get("/users/me"), want: 1},
		{name: "param beats tail", routes: []Route{{Path: "/users/{p...}"}, {Path: "/users/{id}"}},
			req: get("/users/7"), want: 1, params: "id=7"},
		{name: "leftmost difference decides", routes: []Route{{Path: "/a/{x}/c"}, {Path: "/a/b/{y}"}},
			req: get("/a/b/c"), want: 1, params: "y=c"},
		{name: "backtracks out of a literal", routes: []Route{{Path: "/a/b/c"}, {Path: "/a/{x}/d"}},
			req: get("/a/b/d"), want: 1, params: "x=b"},
		{name: "backtracks into tail", routes: []Route{{Path: "/a/b/c"}, {Path: "/a/{x...}"}},
			req: get("/a/b/d"), want: 1, params: "x=b/d"},
		{name: "longer template wins when a prefix", routes: []Route{{Path: "/files"}, {Path: "/files/{p...}"}},
			req: get("/files"), want: 1, params: "p="},
		{name: "empty literal beats tail at root", routes: []Route{{Path: "/{p...}"}, {Path: "/"}},
			req: get("/"), want: 1},
		{name: "deeper tail beats root tail", routes: []Route{{Path: "/{p...}"}, {Path: "/api/{p...}"}},
			req: get("/api/x"), want: 1, params: "p=x"},
		// Rule 4: routes listing methods beat routes that do not.
		{name: "methods beat none", routes: []Route{{Path: "/m"}, {Path: "/m", Methods: []string{"GET"}}},
			req: get("/m"), want: 1},
		{name: "none catches other methods", routes: []Route{{Path: "/m"}, {Path: "/m", Methods: []string{"GET"}}},
			req: request{method: "POST", path: "/m"}, want: 0},
		// Rule 5: more header and query matchers first.
		{name: "more matchers first", routes: []Route{
			{Path: "/h", Headers: map[string]string{"X-A": "1"}},
			{Path: "/h", Headers: map[string]string{"X-A": "1"}, Query: map[string]string{"v": "2"}}},
			req: request{method: "GET", path: "/h", hdr: http.Header{"X-A": {"1"}}, query: "v=2"}, want: 1},
		{name: "matchers beat none", routes: []Route{{Path: "/h"}, {Path: "/h", Query: map[string]string{"v": "2"}}},
			req: request{method: "GET", path: "/h", query: "v=2"}, want: 1},
		{name: "methods beat matchers", routes: []Route{{Path: "/h", Query: map[string]string{"v": "2"}}, {Path: "/h", Methods: []string{"GET"}}},
			req: request{method: "GET", path: "/h", query: "v=2"}, want: 1},
		// Rule 6: input order.
		{name: "input order", routes: []Route{{Path: "/o", Headers: map[string]string{"X-A": "1"}}, {Path: "/o", Headers: map[string]string{"X-B": "1"}}},
			req: request{method: "GET", path: "/o", hdr: http.Header{"X-A": {"1"}, "X-B": {"1"}}}, want: 0},
		{name: "input order reversed", routes: []Route{{Path: "/o", Headers: map[string]string{"X-B": "1"}}, {Path: "/o", Headers: map[string]string{"X-A": "1"}}},
			req: request{method: "GET", path: "/o", hdr: http.Header{"X-A": {"1"}, "X-B": {"1"}}}, want: 0},
	})
}

func TestPaths(t *testing.T) {
	t.Parallel()
	tail := []Route{{Path: "/files/{p...}"}}
	runMatchCases(t, []matchCase{
		{name: "tail without slash", routes: tail, req: get("/files"), want: 0, params: "p="},
		{name: "tail with slash", routes: tail, req: get("/files/"), want: 0, params: "p="},
		{name: "tail segments", routes: tail, req: get("/files/a/b"), want: 0, params: "p=a/b"},
		{name: "tail keeps trailing slash", routes: tail, req: get("/files/a/"), want: 0, params: "p=a/"},
		{name: "tail keeps empty segments", routes: tail, req: get("/files//a"), want: 0, params: "p=/a"},
		{name: "tail segment boundary", routes: tail, req: get("/filesx"), want: NotFound},
		{name: "root tail", routes: []Route{{Path: "/{p...}"}}, req: get("/a/b"), want: 0, params: "p=a/b"},
		{name: "root tail on root", routes: []Route{{Path: "/{p...}"}}, req: get("/"), want: 0, params: "p="},
		{name: "segment boundary", routes: []Route{{Path: "/api"}}, req: get("/apifoo"), want: NotFound},
		{name: "no prefix match", routes: []Route{{Path: "/api"}}, req: get("/api/x"), want: NotFound},
		{name: "trailing slash significant", routes: []Route{{Path: "/users/{id}"}}, req: get("/users/1/"), want: NotFound},
		{name: "trailing slash template", routes: []Route{{Path: "/users/"}}, req: get("/users"), want: NotFound},
		{name: "trailing slash template hit", routes: []Route{{Path: "/users/"}}, req: get("/users/"), want: 0},
		{name: "root", routes: []Route{{Path: "/"}}, req: get("/"), want: 0},
		{name: "root is not everything", routes: []Route{{Path: "/"}}, req: get("/a"), want: NotFound},
		{name: "param never empty", routes: []Route{{Path: "/u/{id}/x"}}, req: get("/u//x"), want: NotFound},
		{name: "param never dot", routes: []Route{{Path: "/u/{id}"}}, req: get("/u/."), want: NotFound},
		{name: "param never dot-dot", routes: []Route{{Path: "/u/{id}"}}, req: get("/u/.."), want: NotFound},
		{name: "param may contain dots", routes: []Route{{Path: "/u/{id}"}}, req: get("/u/..."), want: 0, params: "id=..."},
		{name: "param is escaped", routes: []Route{{Path: "/u/{id}"}}, req: get("/u/a%2Fb"), want: 0, params: "id=a%2Fb"},
		{name: "params in template order", routes: []Route{{Path: "/{a}/x/{b}/{c...}"}}, req: get("/1/x/2/3/4"), want: 0, params: "a=1,b=2,c=3/4"},
		{name: "case-sensitive", routes: []Route{{Path: "/API"}}, req: get("/api"), want: NotFound},
		{name: "empty segment literal", routes: []Route{{Path: "/a//b"}}, req: get("/a//b"), want: 0},
		{name: "escaped literal is canonical", routes: []Route{{Path: "/caf%c3%a9/%7euser"}}, req: get("/caf%C3%A9/~user"), want: 0},
		{name: "not a path", routes: []Route{{Path: "/{p...}"}}, req: get("*"), want: NotFound},
		{name: "empty path", routes: []Route{{Path: "/{p...}"}}, req: get(""), want: NotFound},
	})
}

func TestHostsHeadersQuery(t *testing.T) {
	t.Parallel()
	wild := []Route{{Hosts: []string{"*.example.com"}, Path: "/"}}
	hdr := []Route{{Path: "/", Headers: map[string]string{"x-canary": "true"}}}
	qry := []Route{{Path: "/", Query: map[string]string{"v": "2 b"}}}
	runMatchCases(t, []matchCase{
		{name: "wildcard one level", routes: wild, req: request{host: "a.example.com", path: "/"}, want: 0},
		{name: "wildcard two levels", routes: wild, req: request{host: "a.b.example.com", path: "/"}, want: 0},
		{name: "wildcard not apex", routes: wild, req: request{host: "example.com", path: "/"}, want: NotFound},
		{name: "wildcard label boundary", routes: wild, req: request{host: "aexample.com", path: "/"}, want: NotFound},
		{name: "wildcard no host", routes: wild, req: request{path: "/"}, want: NotFound},
		{name: "exact host", routes: []Route{{Hosts: []string{"API.Example.com."}, Path: "/"}}, req: request{host: "api.example.com", path: "/"}, want: 0},
		{name: "exact host other", routes: []Route{{Hosts: []string{"api.example.com"}, Path: "/"}}, req: request{host: "www.example.com", path: "/"}, want: NotFound},
		{name: "header any value", routes: hdr, req: request{path: "/", hdr: http.Header{"X-Canary": {"false", "true"}}}, want: 0},
		{name: "header exact value", routes: hdr, req: request{path: "/", hdr: http.Header{"X-Canary": {"TRUE"}}}, want: NotFound},
		{name: "header missing", routes: hdr, req: get("/"), want: NotFound},
		{name: "query plain", routes: qry, req: request{path: "/", query: "a=1&v=2+b"}, want: 0},
		{name: "query escaped", routes: qry, req: request{path: "/", query: "%76=2%20%62"}, want: 0},
		{name: "query any value", routes: qry, req: request{path: "/", query: "v=1&v=2+b"}, want: 0},
		{name: "query wrong value", routes: qry, req: request{path: "/", query: "v=2"}, want: NotFound},
		{name: "query key prefix", routes: qry, req: request{path: "/", query: "vv=2+b"}, want: NotFound},
		{name: "query bad escape skipped", routes: qry, req: request{path: "/", query: "v=2+b%zz"}, want: NotFound},
		{name: "query semicolon skipped", routes: qry, req: request{path: "/", query: "v=2+b;x=1"}, want: NotFound},
		{name: "query empty value", routes: []Route{{Path: "/", Query: map[string]string{"debug": ""}}}, req: request{path: "/", query: "debug"}, want: 0},
	})
}

func TestMethods(t *testing.T) {
	t.Parallel()
	split := []Route{
		{Path: "/x", Methods: []string{"GET"}},
		{Path: "/x", Methods: []string{"POST", "PUT"}},
		{Path: "/y", Methods: []string{"CONNECT"}},
		{Path: "/z"},
		{Path: "/c", Methods: []string{"PURGE"}},
		{Path: "/c", Methods: []string{"GET"}},
		{Path: "/h", Methods: []string{"POST"}, Headers: map[string]string{"X-A": "1"}},
		{Path: "/h", Methods: []string{"DELETE"}},
	}
	m := func(method, path string) request { return request{method: method, path: path} }
	runMatchCases(t, []matchCase{
		{name: "GET", routes: split, req: m("GET", "/x"), want: 0},
		{name: "HEAD via GET", routes: split, req: m("HEAD", "/x"), want: 0},
		{name: "second route", routes: split, req: m("PUT", "/x"), want: 1},
		{name: "405 union", routes: split, req: m("DELETE", "/x"), want: MethodNotAllowed, allow: "GET, HEAD, POST, PUT"},
		{name: "405 one route", routes: split[:1], req: m("POST", "/x"), want: MethodNotAllowed, allow: "GET, HEAD"},
		{name: "405 custom method", routes: split, req: m("POST", "/c"), want: MethodNotAllowed, allow: "GET, HEAD, PURGE"},
		{name: "custom method", routes: split, req: m("PURGE", "/c"), want: 4},
		{name: "explicit CONNECT", routes: split, req: m("CONNECT", "/y"), want: 2},
		{name: "CONNECT needs listing", routes: split, req: m("CONNECT", "/z"), want: MethodNotAllowed, allow: "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"},
		{name: "TRACE needs listing", routes: split, req: m("TRACE", "/z"), want: MethodNotAllowed, allow: "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"},
		{name: "any method includes custom", routes: split, req: m("PROPFIND", "/z"), want: 3},
		{name: "OPTIONS not implied", routes: split, req: m("OPTIONS", "/x"), want: MethodNotAllowed, allow: "GET, HEAD, POST, PUT"},
		{name: "405 ignores routes whose headers miss", routes: split, req: m("GET", "/h"), want: MethodNotAllowed, allow: "DELETE"},
		{name: "405 counts routes whose headers match", routes: split, req: request{method: "GET", path: "/h", hdr: http.Header{"X-A": {"1"}}},
			want: MethodNotAllowed, allow: "DELETE, POST"},
		{name: "method names are case-sensitive", routes: split, req: m("get", "/x"), want: MethodNotAllowed, allow: "GET, HEAD, POST, PUT"},
		{name: "404 beats 405", routes: split, req: m("GET", "/nope"), want: NotFound},
		{name: "405 then a later match", routes: []Route{{Path: "/a/b", Methods: []string{"POST"}}, {Path: "/a/{x}"}},
			req: m("GET", "/a/b"), want: 1, params: "x=b"},
	})
}

func TestParamsAppend(t *testing.T) {
	t.Parallel()
	tb := mustCompile(t, []Route{{Path: "/a/{x}/{y}"}, {Path: "/a/{x}/z/{w}"}})
	buf := make(policy.Params, 1, 8)
	buf[0] = policy.Param{Name: "keep", Value: "1"}
	idx, ps, _ := tb.Match("GET", "", "/a/1/z/2", nil, "", buf)
	if idx != 1 || fmtParams(ps) != "keep=1,x=1,w=2" || &ps[0] != &buf[0] {
		t.Fatalf("got %d %s (same array: %v)", idx, fmtParams(ps), &ps[0] == &buf[0])
	}
	// A miss after backtracking through parameters leaves only what was given.
	idx, ps, _ = tb.Match("GET", "", "/a/1/z/2/3", nil, "", buf[:1])
	if idx != NotFound || fmtParams(ps) != "keep=1" {
		t.Fatalf("miss: %d %s", idx, fmtParams(ps))
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tb := mustCompile(t, benchRoutes(1000))
	ps := make(policy.Params, 0, 8)
	for _, c := range benchCases(1000) {
		allocs := testing.AllocsPerRun(100, func() {
			_, ps, _ = tb.Match(c.method, c.host, c.path, c.hdr, c.query, ps[:0])
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations", c.name, allocs)
		}
	}
}

func TestConflicts(t *testing.T) {
	t.Parallel()
	get, post := []string{"GET"}, []string{"POST"}
	cases := []struct {
		name   string
		routes []Route
		other  int // the route that route 1 conflicts with, or -1
	}{
		{"same path", []Route{{Path: "/a"}, {Path: "/a"}}, 0},
		{"same shape other names", []Route{{Path: "/u/{id}"}, {Path: "/u/{name}"}}, 0},
		{"same tail other names", []Route{{Path: "/u/{a...}"}, {Path: "/u/{b...}"}}, 0},
		{"methods overlap", []Route{{Path: "/a", Methods: []string{"GET", "POST"}}, {Path: "/a", Methods: post}}, 0},
		{"HEAD implied by GET", []Route{{Path: "/a", Methods: get}, {Path: "/a", Methods: []string{"HEAD"}}}, 0},
		{"shared host", []Route{{Path: "/a", Hosts: []string{"a.com", "b.com"}}, {Path: "/a", Hosts: []string{"B.com"}}}, 0},
		{"shared wildcard", []Route{{Path: "/a", Hosts: []string{"*.a.com"}}, {Path: "/a", Hosts: []string{"*.a.com"}}}, 0},
		{"same matchers", []Route{{Path: "/a", Headers: map[string]string{"x-a": "1"}}, {Path: "/a", Headers: map[string]string{"X-A": "1"}}}, 0},
		{"same priority", []Route{{Path: "/a", Priority: 3}, {Path: "/a", Priority: 3}}, 0},
		{"any method vs listed", []Route{{Path: "/a"}, {Path: "/a", Methods: get}}, -1},
		{"disjoint methods", []Route{{Path: "/a", Methods: get}, {Path: "/a", Methods: post}}, -1},
		{"priority", []Route{{Path: "/a"}, {Path: "/a", Priority: 1}}, -1},
		{"header", []Route{{Path: "/a"}, {Path: "/a", Headers: map[string]string{"X": "1"}}}, -1},
		{"header value", []Route{{Path: "/a", Headers: map[string]string{"X": "1"}}, {Path: "/a", Headers: map[string]string{"X": "2"}}}, -1},
		{"query", []Route{{Path: "/a", Query: map[string]string{"v": "1"}}, {Path: "/a", Query: map[string]string{"v": "2"}}}, -1},
		{"header vs query", []Route{{Path: "/a", Headers: map[string]string{"V": "1"}}, {Path: "/a", Query: map[string]string{"V": "1"}}}, -1},
		{"different hosts", []Route{{Path: "/a", Hosts: []string{"a.com"}}, {Path: "/a", Hosts: []string{"b.com"}}}, -1},
		{"host vs none", []Route{{Path: "/a", Hosts: []string{"a.com"}}, {Path: "/a"}}, -1},
		{"exact vs wildcard", []Route{{Path: "/a", Hosts: []string{"a.b.com"}}, {Path: "/a", Hosts: []string{"*.b.com"}}}, -1},
		{"literal vs param", []Route{{Path: "/a/b"}, {Path: "/a/{x}"}}, -1},
		{"param vs tail", []Route{{Path: "/a/{x}"}, {Path: "/a/{x...}"}}, -1},
		{"prefix vs tail", []Route{{Path: "/a"}, {Path: "/a/{x...}"}}, -1},
		{"trailing slash", []Route{{Path: "/a"}, {Path: "/a/"}}, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Compile(c.routes)
			if c.other < 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Index != 1 || errs[0].Other != c.other || errs[0].Field != "match" {
				t.Fatalf("want one conflict of route 1 with %d, got %v", c.other, err)
			}
		})
	}
}

func TestConflictMessages(t *testing.T) {
	t.Parallel()
	_, err := Compile([]Route{
		{Path: "/x"},
		{Hosts: []string{"api.example.com"}, Path: "/users/{id}", Methods: []string{"GET", "PUT"}},
		{Path: "/x"},
		{Hosts: []string{"api.example.com"}, Path: "/users/{uid}", Methods: []string{"GET"}},
		{Path: "/x"},
	})
	want := strings.Join([]string{
		"route 2 conflicts with route 0: both match the same requests (any host, path /x, any method); set priority or a distinguishing matcher",
		"route 3 conflicts with route 1: both match the same requests (same hosts, path /users/{uid}, methods GET,HEAD); set priority or a distinguishing matcher",
		"route 4 conflicts with route 0: both match the same requests (any host, path /x, any method); set priority or a distinguishing matcher",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		route Route
		field string
		msg   string
	}{
		{"empty path", Route{}, "match.path", "a path template is required"},
		{"bad template", Route{Path: "/{a"}, "match.path", "malformed parameter"},
		{"empty host", Route{Path: "/", Hosts: []string{""}}, "match.hosts", "is empty"},
		{"inner wildcard", Route{Path: "/", Hosts: []string{"a.*.com"}}, "match.hosts", "leading"},
		{"bare wildcard", Route{Path: "/", Hosts: []string{"*"}}, "match.hosts", "leading"},
		{"host with scheme", Route{Path: "/", Hosts: []string{"http://a.com"}}, "match.hosts", "without scheme"},
		{"empty label", Route{Path: "/", Hosts: []string{"a..com"}}, "match.hosts", "empty label"},
		{"lowercase method", Route{Path: "/", Methods: []string{"get"}}, "match.methods", "case-sensitive"},
		{"method with space", Route{Path: "/", Methods: []string{"GE T"}}, "match.methods", "not a method"},
		{"bad header name", Route{Path: "/", Headers: map[string]string{"X A": "1"}}, "match.headers", "not a header name"},
		{"duplicate header", Route{Path: "/", Headers: map[string]string{"x-a": "1", "X-A": "2"}}, "match.headers", "listed twice"},
		{"empty query key", Route{Path: "/", Query: map[string]string{"": "1"}}, "match.query", "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := Compile([]Route{{Path: "/ok"}, c.route})
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 {
				t.Fatalf("want one error, got %v", err)
			}
			e := errs[0]
			if e.Index != 1 || e.Other != -1 || e.Field != c.field || !strings.Contains(e.Msg, c.msg) ||
				!strings.HasPrefix(e.Error(), "route 1: "+c.field+": ") {
				t.Fatalf("got %+v (%v)", e, e)
			}
		})
	}
}

func TestCompileReportsEveryError(t *testing.T) {
	t.Parallel()
	_, err := Compile([]Route{{Path: "x"}, {Path: "/a"}, {Path: "/a"}, {Path: "/", Methods: []string{"get"}, Hosts: []string{"*"}}})
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 4 {
		t.Fatalf("want 4 errors, got %v", err)
	}
	for i, want := range []int{0, 2, 3, 3} {
		if errs[i].Index != want {
			t.Fatalf("errors out of order: %v", err)
		}
	}
}
