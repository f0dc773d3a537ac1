package router

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/policy"
)

func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"/", "/users/{id}", "/files/{p...}", "/{a}/{b}/c", "/{x", "/a/{b...}/c",
		"/caf%c3%a9/%7e", "/a//b/", "/%2e", "/{a}/{a}"} {
		f.Add(s, "v/../w")
	}
	f.Fuzz(func(t *testing.T, s, value string) {
		tpl, err := ParseTemplate(s)
		if err != nil {
			return
		}
		again, err := ParseTemplate(tpl.String())
		if err != nil || again.shape() != tpl.shape() {
			t.Fatalf("round trip of %q: %v", s, err)
		}
		emptyLiteral := false
		var ps, empty policy.Params
		for i, seg := range tpl.segs {
			switch seg.kind {
			case segLiteral:
				if seg.text == "" && i < len(tpl.segs)-1 {
					emptyLiteral = true
				}
				if c, err := canonicalLiteral(seg.text); err != nil || c != seg.text || strings.ContainsAny(c, "/{}") {
					t.Fatalf("%q: literal %q is not canonical (%q, %v)", s, seg.text, c, err)
				}
			default:
				ps = append(ps, policy.Param{Name: seg.text, Value: value})
				empty = append(empty, policy.Param{Name: seg.text})
			}
		}
		for _, params := range []policy.Params{ps, empty} {
			out := string(tpl.Expand(nil, params))
			if out == "" || out[0] != '/' {
				t.Fatalf("%q expands to %q", s, out)
			}
			for _, seg := range strings.Split(out[1:], "/") {
				if seg == "." || seg == ".." {
					t.Fatalf("%q with %q expands to a dot-segment: %q", s, params, out)
				}
			}
		}
		if out := string(tpl.Expand(nil, empty)); !emptyLiteral && strings.Contains(out, "//") {
			t.Fatalf("%q with empty values expands to %q", s, out)
		}
	})
}

// parseSpec reads routes written one a line as
// "priority hosts path methods headers query", lists comma-separated, "-" for none,
// headers and query as k=v pairs.
func parseSpec(spec string) []Route {
	var routes []Route
	for _, line := range strings.Split(spec, "\n") {
		if len(routes) == 8 {
			break
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		for len(f) < 6 {
			f = append(f, "-")
		}
		list := func(s string) []string {
			if s == "-" {
				return nil
			}
			return strings.Split(s, ",")
		}
		kvs := func(s string) map[string]string {
			if s == "-" {
				return nil
			}
			m := map[string]string{}
			for _, p := range strings.Split(s, ",") {
				k, v, _ := strings.Cut(p, "=")
				m[k] = v
			}
			return m
		}
		prio, _ := strconv.Atoi(f[0])
		routes = append(routes, Route{Priority: prio, Hosts: list(f[1]), Path: f[2], Methods: list(f[3]),
			Headers: kvs(f[4]), Query: kvs(f[5])})
	}
	return routes
}

func FuzzMatch(f *testing.F) {
	f.Add("0 - /users/{id} GET\n0 - /users/me\n1 - /{p...} - X-A=1", "GET", "", "/users/me", "q=1")
	f.Add("0 *.x.com /files/{p...}\n0 a.x.com /files/{p...} POST\n0 - /files", "POST", "a.x.com", "/files", "")
	f.Add("0 - /a/{b}/c\n0 - /a/b/{c} - - q=1\n0 - /{p...} CONNECT", "CONNECT", "", "/a//c", "q=%31")
	f.Add("0 - /a GET\n0 - /a PUT,PURGE", "DELETE", "h", "/a", "")
	f.Fuzz(func(t *testing.T, spec, method, host, path, rawQuery string) {
		routes := parseSpec(spec)
		if len(routes) == 0 {
			return
		}
		h := http.Header{"X-A": {"1"}, "X-B": {"2", "3"}}
		checkAgainstReference(t, routes, method, host, path, h, rawQuery)
	})
}
