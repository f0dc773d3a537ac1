package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/redistest"
)

const usageConfig = `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
{{if .admin}}admin: { addr: "{{.admin}}" }{{end}}
state: { redis: { url: "{{.redis}}" } }
usage: { flush_interval: 1h }
consumers:
  - { name: acme, credentials: { api_keys: [{ sha256: "{{.acme}}" }] } }
  - { name: globex, credentials: { api_keys: [{ sha256: "{{.globex}}" }] } }
routes:
  - name: orders
    match: { path: /orders }
    respond: { body: "0123456789" }
    policies: [{ api_key: {} }]
`

// TestUsageExactAcrossNodes: two gateways meter into one Redis; after one shuts down gracefully
// (its last counts flushed on the way out), the totals equal the requests served, exactly, and
// export as JSON and CSV.
func TestUsageExactAcrossNodes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	digest := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
	adminAddr := freePort(t)
	base := map[string]any{"redis": srv.URL(), "acme": digest("acme-usage-key-0123"), "globex": digest("globex-usage-key-012")}
	withAdmin := map[string]any{"admin": adminAddr}
	for k, v := range base {
		withAdmin[k] = v
	}
	a := start(t, usageConfig, withAdmin)
	b := start(t, usageConfig, map[string]any{"admin": "", "redis": base["redis"], "acme": base["acme"], "globex": base["globex"]})
	c := client()
	send := func(x *gw, key string) {
		req, _ := http.NewRequest("GET", x.url("public", "/orders"), nil)
		req.Header.Set("X-API-Key", key)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
	}
	for i := range 30 {
		send([]*gw{a, b}[i%2], "acme-usage-key-0123")
	}
	for range 7 {
		send(b, "globex-usage-key-012")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	get := func(query string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/admin/usage?"+query, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get("group_by=consumer")
	var report struct {
		Rows []struct {
			Consumer string
			Requests int64
			BytesOut int64 `json:"bytes_out"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&report); err != nil || resp.StatusCode != 200 {
		t.Fatalf("usage: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	got := map[string]int64{}
	for _, r := range report.Rows {
		got[r.Consumer] = r.Requests
		if r.BytesOut != r.Requests*10 {
			t.Errorf("%s: %d bytes out for %d responses of 10 bytes", r.Consumer, r.BytesOut, r.Requests)
		}
	}
	if got["acme"] != 30 || got["globex"] != 7 {
		t.Fatalf("totals %v, want acme 30 and globex 7 exactly", got)
	}
	resp = get("consumer=acme&group_by=consumer,route,status&format=csv")
	recs, err := csv.NewReader(resp.Body).ReadAll()
	resp.Body.Close()
	if err != nil || len(recs) != 2 || strings.Join(recs[0], ",") != "consumer,route,status,requests,bytes_in,bytes_out" || strings.Join(recs[1][:4], ",") != "acme,orders,2xx,30" {
		t.Fatalf("csv %v %v", recs, err)
	}
	if resp := get("from=yesterday"); resp.StatusCode != 400 {
		t.Errorf("a bad from: %d", resp.StatusCode)
	}
}
