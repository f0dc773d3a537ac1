package router

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/limen-gateway/limen/policy"
)

// benchRoutes returns n routes mixing what real configs have: exact and wildcard hosts, literal
// and parameter segments, tails, methods, header and query matchers, sharing prefixes so misses
// backtrack.
func benchRoutes(n int) []Route {
	routes := make([]Route, 0, n)
	for i := 0; len(routes) < n; i++ {
		v := i % 3
		switch i % 8 {
		case 0:
			routes = append(routes, Route{Path: fmt.Sprintf("/api/v%d/svc%d/users/{id}", v, i), Methods: []string{"GET", "PUT"}})
		case 1:
			routes = append(routes, Route{Path: fmt.Sprintf("/api/v%d/svc%d/users/{id}/orders/{oid}", v, i-1), Methods: []string{"GET"}})
		case 2:
			routes = append(routes, Route{Hosts: []string{fmt.Sprintf("h%d.example.com", i)}, Path: "/orders/{id}/items"})
		case 3:
			routes = append(routes, Route{Hosts: []string{fmt.Sprintf("*.t%d.example.com", i)}, Path: fmt.Sprintf("/x/%d/{rest...}", i)})
		case 4:
			routes = append(routes, Route{Path: fmt.Sprintf("/static/%d/{path...}", i)})
		case 5:
			routes = append(routes, Route{Path: fmt.Sprintf("/api/v%d/svc%d/status", v, i-5), Methods: []string{"GET"}})
		case 6:
			routes = append(routes, Route{Path: fmt.Sprintf("/api/v%d/svc%d/users/{id}", v, i-6), Methods: []string{"POST"},
				Headers: map[string]string{"X-Tenant": fmt.Sprintf("t%d", i)}})
		case 7:
			routes = append(routes, Route{Hosts: []string{fmt.Sprintf("h%d.example.com", i), fmt.Sprintf("*.w%d.example.com", i)},
				Path: fmt.Sprintf("/api/{version}/svc%d/search", i-7), Query: map[string]string{"q": "x"}})
		}
	}
	return routes
}

type benchCase struct {
	name, method, host, path, query string
	hdr                             http.Header
	want                            int // a route index, NotFound or MethodNotAllowed
}

// benchCases returns requests against benchRoutes(n) that hit a route near the middle.
func benchCases(n int) []benchCase {
	k := n / 2 / 8 * 8 // a block of eight routes near the middle
	v := k % 3
	hdr := http.Header{"X-Tenant": {fmt.Sprintf("t%d", k+6)}, "User-Agent": {"bench"}}
	return []benchCase{
		{"hit", "GET", "www.example.com", fmt.Sprintf("/api/v%d/svc%d/status", (k+5)%3, k), "", hdr, k + 5},
		{"param", "GET", "www.example.com", fmt.Sprintf("/api/v%d/svc%d/users/42/orders/7", (k+1)%3, k), "a=1&b=2", hdr, k + 1},
		{"miss", "GET", "unknown.example.com", fmt.Sprintf("/api/v%d/svc%d/users/42/nothing", v, k), "a=1", hdr, NotFound},
		{"wildcard-tail", "GET", fmt.Sprintf("a.b.t%d.example.com", k+3), fmt.Sprintf("/x/%d/a/b/c", k+3), "", nil, k + 3},
		{"host-query", "GET", fmt.Sprintf("h%d.example.com", k+7), fmt.Sprintf("/api/v9/svc%d/search", k), "page=2&q=x", nil, k + 7},
		{"header", "POST", "www.example.com", fmt.Sprintf("/api/v%d/svc%d/users/42", v, k), "", hdr, k + 6},
		{"405", "DELETE", "www.example.com", fmt.Sprintf("/api/v%d/svc%d/status", (k+5)%3, k), "", nil, MethodNotAllowed},
	}
}

func TestBenchCases(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1000, 10000} {
		tb := mustCompile(t, benchRoutes(n))
		for _, c := range benchCases(n) {
			if idx, _, _ := tb.Match(c.method, c.host, c.path, c.hdr, c.query, nil); idx != c.want {
				t.Errorf("routes=%d/%s: got %d, want %d", n, c.name, idx, c.want)
			}
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		tb := mustCompile(b, benchRoutes(n))
		for _, c := range benchCases(n) {
			b.Run(fmt.Sprintf("routes=%d/%s", n, c.name), func(b *testing.B) {
				ps := make(policy.Params, 0, 8)
				b.ReportAllocs()
				for b.Loop() {
					var idx int
					idx, ps, _ = tb.Match(c.method, c.host, c.path, c.hdr, c.query, ps[:0])
					if idx != c.want {
						b.Fatalf("got %d, want %d", idx, c.want)
					}
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
