package router

import (
	"slices"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/policy"
)

func TestParseTemplateErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"":              "must start with /",
		"x":             "must start with /",
		"/{a":           "malformed parameter",
		"/{}":           "parameter name",
		"/{...}":        "parameter name",
		"/{1a}":         "parameter name",
		"/{a-b}":        "parameter name",
		"/{a}/{a}":      "appears twice",
		"/{a}/{a...}":   "appears twice",
		"/{a...}/b":     "must be the last segment",
		"/{a...}/":      "must be the last segment",
		"/x{a}":         "mixes text and a parameter",
		"/{a}x":         "malformed parameter",
		"/a}":           "mixes text and a parameter",
		"/..":           "dot-segment",
		"/a/.":          "dot-segment",
		"/%2e%2E":       "dot-segment",
		"/a b":          "never appears in a normalized path",
		"/a?b":          "never appears in a normalized path",
		"/a#b":          "never appears in a normalized path",
		"/a\\b":         "never appears in a normalized path",
		"/%zz":          "malformed",
		"/%4":           "malformed",
		"/%00":          "control character",
		"/{a}/{b}/{a}":  "appears twice",
		"/{a.b}":        "parameter name",
		"/{a...}/{b..}": "must be the last segment",
	}
	for in, want := range cases {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			_, err := ParseTemplate(in)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("ParseTemplate(%q) = %v, want an error containing %q", in, err, want)
			}
		})
	}
}

func TestParseTemplate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in    string
		shape string
		names []string
	}{
		{"/", "/", nil},
		{"/users/{id}", "/users/{}", []string{"id"}},
		{"/files/{p...}", "/files/{...}", []string{"p"}},
		{"/{p...}", "/{...}", []string{"p"}},
		{"/a//b/", "/a//b/", nil},
		{"/{_x1}/{Y}/{z...}", "/{}/{}/{...}", []string{"_x1", "Y", "z"}},
		{"/caf%c3%a9/%7Euser/%41%2f", "/caf%C3%A9/~user/A%2F", nil},
		{"/v1:batch/@me/a.b/...", "/v1:batch/@me/a.b/...", nil},
		{"/\xc3\xa9", "/\xc3\xa9", nil},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			t.Parallel()
			tpl, err := ParseTemplate(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if tpl.shape() != c.shape || !slices.Equal(tpl.Names(), c.names) || tpl.String() != c.in {
				t.Fatalf("shape %q names %v string %q", tpl.shape(), tpl.Names(), tpl.String())
			}
		})
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	ps := policy.Params{
		{Name: "id", Value: "a%20b"}, {Name: "rest", Value: "x/y"}, {Name: "empty", Value: ""},
		{Name: "dot", Value: ".."}, {Name: "slash", Value: "a/b"}, {Name: "dots", Value: "a/../b/./c/"},
		{Name: "lead", Value: "/a"},
	}
	cases := map[string]string{
		"/v1/users/{id}":         "/v1/users/a%20b",
		"/v2/{rest...}":          "/v2/x/y",
		"/v2{x}":                 "", // invalid template, skipped
		"/v2/{empty...}":         "/v2/",
		"/{rest...}":             "/x/y",
		"/{empty...}":            "/",
		"/a/{id}/b/{rest...}":    "/a/a%20b/b/x/y",
		"/a/{empty}/b":           "/a/b",
		"/{empty}":               "/",
		"/a/{missing}/b":         "/a/b",
		"/a/{dot}/b":             "/a/b",
		"/a/{slash}":             "/a/a%2Fb",
		"/t/{dots...}":           "/t/a/b/c/",
		"/t/{dot...}":            "/t/",
		"/t/{lead...}":           "/t//a",
		"/static/":               "/static/",
		"/%7efiles/{id}":         "/~files/a%20b",
		"/{id}/{empty}/{empty2}": "/a%20b",
	}
	for tplText, want := range cases {
		tpl, err := ParseTemplate(tplText)
		if err != nil {
			if want != "" {
				t.Fatalf("%s: %v", tplText, err)
			}
			continue
		}
		if got := string(tpl.Expand([]byte("keep:"), ps)); got != "keep:"+want {
			t.Errorf("Expand(%s) = %q, want %q", tplText, got, "keep:"+want)
		}
	}
}

// TestExpandRoundTrip checks that what a route captures, expanded into the same template,
// rebuilds the path (up to the tail's optional leading slash) and matches the route again.
func TestExpandRoundTrip(t *testing.T) {
	t.Parallel()
	cases := map[string][]string{
		"/users/{id}":        {"/users/42", "/users/a%2Fb"},
		"/files/{p...}":      {"/files/", "/files/a/b", "/files/a/"},
		"/{a}/x/{b}/{c...}":  {"/1/x/2/3/4"},
		"/api/{v}/{rest...}": {"/api/v1/x"},
	}
	for tplText, paths := range cases {
		tb := mustCompile(t, []Route{{Path: tplText}})
		tpl, _ := ParseTemplate(tplText)
		for _, p := range paths {
			idx, ps, _ := tb.Match("GET", "", p, nil, "", nil)
			if idx != 0 {
				t.Fatalf("%s does not match %s", tplText, p)
			}
			if got := string(tpl.Expand(nil, ps)); got != p {
				t.Errorf("%s: %s expands back to %s", tplText, p, got)
			}
		}
	}
}
