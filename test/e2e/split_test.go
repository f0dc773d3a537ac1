package e2e

import (
	"fmt"
	"net/http"
	"testing"
)

// TestCanarySplit: a weighted split across two real backends, a header rule for beta users, and
// a rollback that is a config change.
func TestCanarySplit(t *testing.T) {
	t.Parallel()
	stable, canary := backend(t, echo("stable")), backend(t, echo("canary"))
	cfg := `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  stable: { targets: [{ url: "{{.stable}}" }] }
  canary: { targets: [{ url: "{{.canary}}" }] }
routes:
  - name: api
    match: { path: "/{p...}" }
    split:
      sticky: "header:X-User"
      rules: [{ headers: { X-Beta: "true" }, upstream: canary }]
      weights: [{ upstream: stable, weight: {{.stableWeight}} }, { upstream: canary, weight: {{.canaryWeight}} }]
`
	vars := map[string]any{"stable": stable.URL, "canary": canary.URL, "stableWeight": 80, "canaryWeight": 20}
	x := start(t, cfg, vars)
	c := client()
	who := func(hdr ...string) string {
		req, _ := http.NewRequest("GET", x.url("public", "/items"), nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		return resp.Header.Get("X-Backend")
	}
	counts := map[string]int{}
	for i := range 1000 {
		user := fmt.Sprintf("u%d", i)
		first := who("X-User", user)
		counts[first]++
		if again := who("X-User", user); again != first {
			t.Fatalf("%s flipped from %s to %s", user, first, again)
		}
	}
	if counts["canary"] < 140 || counts["canary"] > 260 {
		t.Fatalf("80/20 split over 1,000 users: %v", counts)
	}
	if got := who("X-Beta", "true"); got != "canary" {
		t.Fatalf("beta user went to %s", got)
	}
	// Rollback: the canary's weight to 0.
	vars["stableWeight"], vars["canaryWeight"] = 100, 0
	if err := x.reload(cfg); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if got := who("X-User", fmt.Sprintf("u%d", i)); got != "stable" {
			t.Fatalf("after the rollback u%d went to %s", i, got)
		}
	}
}
