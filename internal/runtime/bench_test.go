package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/refpool"
	"github.com/limen-gateway/limen/internal/telemetry"
	_ "github.com/limen-gateway/limen/policies/all"
	"github.com/limen-gateway/limen/policy"
)

func parse(t testing.TB, doc string) *config.Document {
	t.Helper()
	d, err := config.Parse("bench.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// BenchmarkSnapshotBuild10000 compiles 10,000 routes (router, chains, respond terminals).
func BenchmarkSnapshotBuild10000(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("routes:\n")
	for i := range 10000 {
		fmt.Fprintf(&sb, "  - {name: r%d, match: {path: \"/api/v%d/users/{id}\", methods: [GET]}, respond: {body: ok}, policies: [{request_headers: {set: {X-R: r}}}]}\n", i, i)
	}
	doc := parse(b, sb.String())
	b.ReportAllocs()
	for b.Loop() {
		s, err := compile(doc, &refpool.Pool{}, nil, slog.New(slog.DiscardHandler), false)
		if err != nil {
			b.Fatal(err)
		}
		s.close()
	}
}

// BenchmarkChain measures dispatch (snapshot load, routing, chain, error handling) for a route
// without policies and one with a typical edge set, against a respond terminal.
func BenchmarkChain(b *testing.B) {
	doc := parse(b, `
listeners: [{name: l, addr: "127.0.0.1:0"}]
routes:
  - {name: plain, match: {path: /plain}, respond: {body: ok}}
  - name: policies
    match: { path: /policies }
    respond: { body: ok }
    policies:
      - cors: { allow_origins: ["https://app.example.com"] }
      - ip_filter: { deny: [203.0.113.0/24] }
      - request_headers: { set: { X-Gateway: limen } }
      - response_headers: { set: { X-Served-By: limen } }
logging: { access: { output: off } }
`)
	rt := New(Options{})
	if err := rt.applyDoc(doc, "bench"); err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	for _, path := range []string{"/plain", "/policies"} {
		b.Run(path[1:], func(b *testing.B) {
			r := httptest.NewRequest("GET", "http://api.example.com"+path, nil)
			r.URL.RawPath, r.URL.Host = path, "api.example.com"
			r.Header.Set("Origin", "https://app.example.com")
			ex := &policy.Exchange{Listener: "l"}
			r = r.WithContext(policy.WithExchange(r.Context(), ex))
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				ex.Reset()
				ex.Listener = "l"
				rt.ServeHTTP(w, r)
			}
		})
	}
}

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkChainFull is the policy set of the harness's full route (bench/gateway.sh): api_key,
// a local rate limit keyed by consumer, metrics and an access log line written to /dev/null,
// against a respond terminal, so the figure is the policies' and the log's own cost.
func BenchmarkChainFull(b *testing.B) {
	const key = "limen-bench-key-0123456789abcdef"
	digest := sha256.Sum256([]byte(key))
	doc := parse(b, `
listeners: [{name: l, addr: "127.0.0.1:0"}]
consumers:
  - name: bench
    credentials: { api_keys: [{ id: bench, sha256: "`+hex.EncodeToString(digest[:])+`" }] }
routes:
  - name: full
    match: { path: /full }
    respond: { body: ok }
    policies:
      - api_key: {}
      - rate_limit: { key: [consumer], limits: [{ requests: 1000000000, per: 1s }] }
logging: { access: { output: /dev/null } }
`)
	rt := New(Options{Metrics: telemetry.NewMetrics()})
	if err := rt.applyDoc(doc, "bench"); err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	r := httptest.NewRequest("GET", "http://api.example.com/full", nil)
	r.URL.RawPath, r.URL.Host = "/full", "api.example.com"
	ex := &policy.Exchange{Listener: "l"}
	r = r.WithContext(policy.WithExchange(r.Context(), ex))
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		r.Header.Set("X-API-Key", key) // the policy removes it
		ex.Reset()
		ex.Listener = "l"
		rt.ServeHTTP(w, r)
	}
}
