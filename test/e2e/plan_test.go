package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
)

// TestPlansFromConfig: consumers' plans from the top-level plans apply their quotas per
// consumer.
func TestPlansFromConfig(t *testing.T) {
	t.Parallel()
	digest := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
plans:
  free: { quotas: [{ requests: 2, period: day, time_zone: Europe/Paris }] }
  pro: { quotas: [{ requests: 1000, period: month }] }
consumers:
  - { name: small, plan: free, credentials: { api_keys: [{ sha256: "{{.small}}" }] } }
  - { name: big, plan: pro, credentials: { api_keys: [{ sha256: "{{.big}}" }] } }
routes:
  - name: api
    match: { path: /api }
    respond: { body: "ok" }
    policies: [{ api_key: {} }, { plan: {} }]
`, map[string]any{"small": digest("small-key-0123456789"), "big": digest("big-key-0123456789ab")})
	status := func(key string) int {
		req, _ := http.NewRequest("GET", x.url("public", "/api"), nil)
		req.Header.Set("X-API-Key", key)
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		return resp.StatusCode
	}
	for range 2 {
		if s := status("small-key-0123456789"); s != 200 {
			t.Fatalf("free consumer within quota: %d", s)
		}
	}
	if s := status("small-key-0123456789"); s != 429 {
		t.Fatalf("free consumer over its daily quota: %d, want 429", s)
	}
	for range 5 {
		if s := status("big-key-0123456789ab"); s != 200 {
			t.Fatalf("pro consumer: %d", s)
		}
	}
}
