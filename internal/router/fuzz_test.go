package router

import (
	"strings"
	"testing"
)

func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"/", "/users/{id}", "/files/{p...}", "/{a}/{b}/c", "/{x", "/a/{b...}/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tpl, err := ParseTemplate(s)
		if err != nil {
			return
		}
		if _, err := ParseTemplate(tpl.String()); err != nil {
			t.Fatalf("round trip of %q: %v", s, err)
		}
	})
}

func FuzzMatch(f *testing.F) {
	f.Add("/users/{id}", "/users/42")
	f.Add("/files/{p...}", "/files/a/b")
	f.Add("/a/{b}/c", "/a//c")
	f.Fuzz(func(t *testing.T, tplText, path string) {
		tb, err := Compile([]Route{{Path: tplText}, {Path: "/{fallback...}", Priority: -1}})
		if err != nil {
			return
		}
		if path == "" || path[0] != '/' {
			return
		}
		idx, ps, _ := tb.Match("GET", "", path, nil, "", nil)
		if idx != 0 {
			return
		}
		tpl, _ := ParseTemplate(tplText)
		for _, s := range tpl.segs {
			if s.kind != segParam {
				continue
			}
			v, ok := ps.Get(s.text)
			if !ok || v == "" || v == "." || v == ".." || strings.Contains(v, "/") {
				t.Fatalf("%s on %s: param %s=%q", tplText, path, s.text, v)
			}
		}
	})
}
