package router

import (
	"errors"
	"fmt"
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

func TestPrecedence(t *testing.T) {
	t.Parallel()
	routes := []Route{
		0:  {Path: "/users/{id}"},
		1:  {Path: "/users/me"},
		2:  {Path: "/users/{id}", Priority: 10, Headers: map[string]string{"X-Admin": "1"}},
		3:  {Path: "/{p...}"},
		4:  {Path: "/files/{p...}"},
		5:  {Hosts: []string{"api.example.com"}, Path: "/where"},
		6:  {Hosts: []string{"*.example.com"}, Path: "/where"},
		7:  {Hosts: []string{"*.eu.example.com"}, Path: "/where"},
		8:  {Path: "/where"},
		9:  {Path: "/m", Methods: []string{"GET"}},
		10: {Path: "/m"},
		11: {Path: "/q", Query: map[string]string{"v": "2"}},
		12: {Path: "/q"},
		13: {Path: "/a/{x}/c"},
		14: {Path: "/a/b/{y}"},
	}
	tb := mustCompile(t, routes)
	cases := []struct {
		method, host, path, query string
		hdr                       http.Header
		want                      int
		params                    string
	}{
		{"GET", "", "/users/me", "", nil, 1, ""},
		{"GET", "", "/users/42", "", nil, 0, "id=42"},
		{"GET", "", "/users/me", "", http.Header{"X-Admin": {"1"}}, 2, "id=me"},
		{"GET", "", "/users/42/", "", nil, 3, "p=users/42/"},
		{"GET", "", "/files", "", nil, 4, "p="},
		{"GET", "", "/files/", "", nil, 4, "p="},
		{"GET", "", "/files/a/b", "", nil, 4, "p=a/b"},
		{"GET", "", "/filesx", "", nil, 3, "p=filesx"},
		{"GET", "api.example.com", "/where", "", nil, 5, ""},
		{"GET", "shop.example.com", "/where", "", nil, 6, ""},
		{"GET", "a.eu.example.com", "/where", "", nil, 7, ""},
		{"GET", "example.com", "/where", "", nil, 8, ""},
		{"GET", "", "/m", "", nil, 9, ""},
		{"HEAD", "", "/m", "", nil, 9, ""},
		{"POST", "", "/m", "", nil, 10, ""},
		{"GET", "", "/q", "v=2&x=1", nil, 11, ""},
		{"GET", "", "/q", "v=%32", nil, 11, ""},
		{"GET", "", "/q", "v=3", nil, 12, ""},
		{"GET", "", "/a/b/c", "", nil, 14, "y=c"},
		{"TRACE", "", "/m", "", nil, MethodNotAllowed, ""},
	}
	for _, c := range cases {
		idx, ps, _ := tb.Match(c.method, c.host, c.path, c.hdr, c.query, nil)
		if idx != c.want {
			t.Errorf("%s %s%s?%s -> %d, want %d", c.method, c.host, c.path, c.query, idx, c.want)
			continue
		}
		var got []string
		for _, p := range ps {
			got = append(got, p.Name+"="+p.Value)
		}
		if strings.Join(got, ",") != c.params {
			t.Errorf("%s %s params %v, want %s", c.method, c.path, got, c.params)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	tb := mustCompile(t, []Route{
		{Path: "/x", Methods: []string{"GET"}},
		{Path: "/x", Methods: []string{"POST", "PUT"}},
		{Path: "/y", Methods: []string{"CONNECT"}},
	})
	idx, _, allow := tb.Match("DELETE", "", "/x", nil, "", nil)
	if idx != MethodNotAllowed || allow != "GET, HEAD, POST, PUT" {
		t.Fatalf("got %d %q", idx, allow)
	}
	if idx, _, _ := tb.Match("CONNECT", "", "/y", nil, "", nil); idx != 2 {
		t.Fatalf("explicit CONNECT route: %d", idx)
	}
	if idx, _, _ := tb.Match("GET", "", "/nope", nil, "", nil); idx != NotFound {
		t.Fatalf("miss: %d", idx)
	}
}

func TestConflicts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		routes   []Route
		conflict bool
	}{
		{"same path", []Route{{Path: "/a"}, {Path: "/a"}}, true},
		{"same shape different names", []Route{{Path: "/u/{id}"}, {Path: "/u/{name}"}}, true},
		{"methods overlap", []Route{{Path: "/a", Methods: []string{"GET", "POST"}}, {Path: "/a", Methods: []string{"POST"}}}, true},
		{"any method vs GET", []Route{{Path: "/a"}, {Path: "/a", Methods: []string{"GET"}}}, false},
		{"disjoint methods", []Route{{Path: "/a", Methods: []string{"GET"}}, {Path: "/a", Methods: []string{"POST"}}}, false},
		{"priority", []Route{{Path: "/a"}, {Path: "/a", Priority: 1}}, false},
		{"header", []Route{{Path: "/a"}, {Path: "/a", Headers: map[string]string{"X": "1"}}}, false},
		{"shared host", []Route{{Path: "/a", Hosts: []string{"a.com", "b.com"}}, {Path: "/a", Hosts: []string{"B.com"}}}, true},
		{"different hosts", []Route{{Path: "/a", Hosts: []string{"a.com"}}, {Path: "/a", Hosts: []string{"b.com"}}}, false},
		{"host vs none", []Route{{Path: "/a", Hosts: []string{"a.com"}}, {Path: "/a"}}, false},
		{"literal vs param", []Route{{Path: "/a/b"}, {Path: "/a/{x}"}}, false},
	}
	for _, c := range cases {
		_, err := Compile(c.routes)
		var errs Errors
		if got := errors.As(err, &errs); got != c.conflict {
			t.Errorf("%s: conflict=%v (err %v), want %v", c.name, got, err, c.conflict)
		}
		if c.conflict && (errs[0].Index != 1 || errs[0].Other != 0) {
			t.Errorf("%s: error %+v", c.name, errs[0])
		}
	}
}

func TestTemplateErrors(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "x", "/{a", "/{a}/{a}", "/{a...}/b", "/x{a}", "/{1a}", "/..", "/{}"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("ParseTemplate(%q) accepted", bad)
		}
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	ps := policy.Params{{Name: "id", Value: "a%20b"}, {Name: "rest", Value: "x/y"}, {Name: "empty", Value: ""}}
	cases := map[string]string{
		"/v1/users/{id}":      "/v1/users/a%20b",
		"/v2/{rest...}":       "/v2/x/y",
		"/v2/{empty...}":      "/v2",
		"/{rest...}":          "/x/y",
		"/{empty...}":         "/",
		"/a/{id}/b/{rest...}": "/a/a%20b/b/x/y",
	}
	for tpl, want := range cases {
		tp, err := ParseTemplate(tpl)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(tp.Expand(nil, ps)); got != want {
			t.Errorf("Expand(%s) = %q, want %q", tpl, got, want)
		}
	}
}

func benchRoutes(n int) []Route {
	routes := make([]Route, 0, n)
	for i := 0; len(routes) < n; i++ {
		switch i % 4 {
		case 0:
			routes = append(routes, Route{Path: fmt.Sprintf("/api/v%d/users/{id}", i), Methods: []string{"GET", "PUT"}})
		case 1:
			routes = append(routes, Route{Path: fmt.Sprintf("/static/%d/{path...}", i)})
		case 2:
			routes = append(routes, Route{Hosts: []string{fmt.Sprintf("svc%d.example.com", i)}, Path: "/orders/{id}/items"})
		case 3:
			routes = append(routes, Route{Hosts: []string{fmt.Sprintf("*.t%d.example.com", i)}, Path: fmt.Sprintf("/x/%d", i)})
		}
	}
	return routes
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		tb := mustCompile(b, benchRoutes(n))
		cases := []struct{ name, host, path string }{
			{"hit", "", fmt.Sprintf("/api/v%d/users/42", (n/2)/4*4)},
			{"host", fmt.Sprintf("svc%d.example.com", 2+(n/2)/4*4), "/orders/7/items"},
			{"wildcard", fmt.Sprintf("a.t%d.example.com", 3), "/x/3"},
			{"miss", "nohost.test", "/nothing/here/at/all"},
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("routes=%d/%s", n, c.name), func(b *testing.B) {
				ps := make(policy.Params, 0, 8)
				b.ReportAllocs()
				for b.Loop() {
					idx, out, _ := tb.Match("GET", c.host, c.path, nil, "", ps)
					if c.name != "miss" && idx < 0 {
						b.Fatalf("no match for %s%s", c.host, c.path)
					}
					ps = out
				}
			})
		}
	}
}

func BenchmarkCompile10000(b *testing.B) {
	routes := benchRoutes(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(routes); err != nil {
			b.Fatal(err)
		}
	}
}
