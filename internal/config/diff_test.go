package config

import (
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	t.Parallel()
	parse := func(doc string) *Config {
		d, err := Parse("limen.yaml", []byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return d.Config
	}
	base := `upstreams:
  a: { targets: [{ url: "http://127.0.0.1:1" }] }
  b: { targets: [{ url: "http://127.0.0.1:2" }] }
consumers: [{ name: acme }, { name: globex }]
routes:
  - { name: r1, match: { path: /1 }, upstream: a }
  - { name: r2, match: { path: /2 }, upstream: b }
`
	next := `upstreams:
  a: { targets: [{ url: "http://127.0.0.1:9" }] }
  c: { targets: [{ url: "http://127.0.0.1:3" }] }
consumers: [{ name: acme, groups: [x] }, { name: globex }]
routes:
  - { name: r1, match: { path: /1 }, upstream: a }
  - { name: r3, match: { path: /3 }, upstream: c }
server: { grace: 5s }
`
	got := strings.Join(Diff(parse(base), parse(next)), "; ")
	want := "consumers/acme: changed; routes/r2: removed; routes/r3: added; server: changed; upstreams/a: changed; upstreams/b: removed; upstreams/c: added"
	if got != want {
		t.Errorf("diff:\n got %s\nwant %s", got, want)
	}
	if d := Diff(parse(base), parse(base)); len(d) != 0 {
		t.Errorf("identical configs differ: %v", d)
	}
	if d := Diff(nil, parse(base)); len(d) == 0 {
		t.Error("a first config shows no change")
	}
}
