package apikey

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/consumer"
	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

const (
	acmeKey   = "acme-key-0123456789abcdef"
	acmeKey2  = "acme-rotated-key-fedcba9876543210"
	globexKey = "globex-key-0123456789abcdef"
)

func digest(k string) string {
	s := sha256.Sum256([]byte(k))
	return hex.EncodeToString(s[:])
}

func directory() policy.Consumers {
	return consumer.New([]*config.Consumer{
		{Name: "acme", Groups: []string{"partners"}, Plan: "pro", Credentials: config.Credentials{APIKeys: []config.APIKeyCredential{
			{ID: "acme-2026-01", SHA256: digest(acmeKey)},
			{ID: "acme-2026-11", SHA256: digest(acmeKey2)}, // rotation: both keys work
		}}},
		{Name: "globex", Credentials: config.Credentials{APIKeys: []config.APIKeyCredential{{Key: globexKey}}}},
		{Name: "guest"},
	})
}

func withConsumers(bc *policy.BuildContext) { bc.Consumers = directory() }

func TestAPIKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		config    string
		req       func(r *http.Request)
		status    int // 0: passed through
		principal string
		cred      string
	}{
		{"header", `{}`, func(r *http.Request) { r.Header.Set("X-API-Key", acmeKey) }, 0, "acme", "acme-2026-01"},
		{"rotated key", `{}`, func(r *http.Request) { r.Header.Set("X-API-Key", acmeKey2) }, 0, "acme", "acme-2026-11"},
		{"key from env", `{}`, func(r *http.Request) { r.Header.Set("X-API-Key", globexKey) }, 0, "globex", ""},
		{"missing", `{}`, func(r *http.Request) {}, 401, "", ""},
		{"wrong key", `{}`, func(r *http.Request) { r.Header.Set("X-API-Key", acmeKey+"x") }, 401, "", ""},
		{"empty key", `{}`, func(r *http.Request) { r.Header.Set("X-API-Key", "") }, 401, "", ""},
		{"two keys", `{}`, func(r *http.Request) { r.Header.Add("X-API-Key", acmeKey); r.Header.Add("X-API-Key", globexKey) }, 401, "", ""},
		{"huge key", `{}`, func(r *http.Request) { r.Header.Set("X-API-Key", string(make([]byte, 4096))) }, 401, "", ""},
		{"query", `{"from": [{"query": "api_key"}]}`, func(r *http.Request) { r.URL.RawQuery = "a=1&api_key=" + acmeKey }, 0, "acme", "acme-2026-01"},
		{"cookie", `{"from": [{"cookie": "k"}]}`, func(r *http.Request) { r.Header.Set("Cookie", "x=1; k="+acmeKey) }, 0, "acme", "acme-2026-01"},
		{"prefix", `{"from": [{"header": "Authorization", "prefix": "ApiKey "}]}`, func(r *http.Request) { r.Header.Set("Authorization", "apikey "+acmeKey) }, 0, "acme", "acme-2026-01"},
		{"prefix missing", `{"from": [{"header": "Authorization", "prefix": "ApiKey "}]}`, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+acmeKey) }, 401, "", ""},
		{"second source", `{"from": [{"header": "X-Key"}, {"query": "key"}]}`, func(r *http.Request) { r.URL.RawQuery = "key=" + acmeKey }, 0, "acme", "acme-2026-01"},
		{"anonymous", `{"anonymous": "guest"}`, func(r *http.Request) {}, 0, "guest", ""},
		{"anonymous, bad key", `{"anonymous": "guest"}`, func(r *http.Request) { r.Header.Set("X-API-Key", "nope-nope-nope-nope") }, 401, "", ""},
		{"optional", `{"optional": true}`, func(r *http.Request) {}, 0, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := policytest.MustBuild(t, Kind, tc.config, withConsumers)
			r := httptest.NewRequest("GET", "/x", nil)
			tc.req(r)
			ex := &policy.Exchange{}
			res := policytest.Serve(p, r, ex, nil)
			if tc.status != 0 {
				pe := policytest.PolicyError(res.Err)
				if pe == nil || pe.Status != tc.status || res.Reached {
					t.Fatalf("got %v (reached %v), want %d", res.Err, res.Reached, tc.status)
				}
				if pe.Header.Get("Www-Authenticate") != `Key realm="limen"` {
					t.Errorf("challenge %q", pe.Header.Get("Www-Authenticate"))
				}
				return
			}
			if res.Err != nil || !res.Reached {
				t.Fatalf("got %v (reached %v), want it through", res.Err, res.Reached)
			}
			got := ""
			if ex.Principal != nil {
				got = ex.Principal.ID
				if ex.Principal.Credential != tc.cred {
					t.Errorf("credential %q, want %q", ex.Principal.Credential, tc.cred)
				}
			}
			if got != tc.principal {
				t.Errorf("principal %q, want %q", got, tc.principal)
			}
			// The key never travels upstream.
			seen := res.Seen
			if seen.Header.Get("X-API-Key") != "" || seen.URL.Query().Get("api_key") != "" || seen.URL.Query().Get("key") != "" {
				t.Errorf("the key reached the upstream: %v %s", seen.Header, seen.URL.RawQuery)
			}
			if c, err := seen.Cookie("k"); err == nil {
				t.Errorf("the key cookie reached the upstream: %v", c)
			}
		})
	}
}

func TestAPIKeyKeepsOtherQueryAndCookies(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"from": [{"query": "api_key"}, {"cookie": "k"}]}`, withConsumers)
	r := httptest.NewRequest("GET", "/x?a=1&api_key="+acmeKey+"&b=2", nil)
	res := policytest.Serve(p, r, nil, nil)
	if res.Err != nil || res.Seen.URL.Query().Get("a") != "1" || res.Seen.URL.Query().Get("b") != "2" {
		t.Fatalf("err %v, query %q", res.Err, res.Seen.URL.RawQuery)
	}
	r = httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Cookie", "session=s1; k="+acmeKey+"; theme=dark")
	res = policytest.Serve(p, r, nil, nil)
	if res.Err != nil || res.Seen.Header.Get("Cookie") != "session=s1; theme=dark" {
		t.Fatalf("err %v, cookie %q", res.Err, res.Seen.Header.Get("Cookie"))
	}
}

// TestAPIKeyAnyOf: an earlier authentication wins; an anonymous principal from an earlier
// policy is replaced by a real one.
func TestAPIKeyAnyOf(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{}`, withConsumers)
	already := &policy.Principal{ID: "jwt-user", Method: "jwt"}
	r := httptest.NewRequest("GET", "/x", nil)
	ex := &policy.Exchange{Principal: already}
	if res := policytest.Serve(p, r, ex, nil); res.Err != nil || ex.Principal != already {
		t.Fatalf("an authenticated request was re-checked: %v, %+v", res.Err, ex.Principal)
	}
	r = httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("X-API-Key", acmeKey)
	ex = &policy.Exchange{Principal: &policy.Principal{ID: "guest", Method: "anonymous"}}
	if res := policytest.Serve(p, r, ex, nil); res.Err != nil || ex.Principal.ID != "acme" {
		t.Fatalf("anonymous was not replaced: %v, %+v", res.Err, ex.Principal)
	}
}

func TestAPIKeyConfig(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		`{"from": [{}]}`,
		`{"from": [{"header": "X", "query": "y"}]}`,
		`{"from": [{"query": "k", "prefix": "x"}]}`,
		`{"anonymous": "nobody"}`,
		`{"optional": true, "anonymous": "guest"}`,
		`{"realm": 1}`,
		`{"unknown": true}`,
	} {
		if _, err := policytest.Build(Kind, bad, withConsumers); err == nil {
			t.Errorf("%s: built", bad)
		}
	}
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/api_key.md", Kind, withConsumers)
}

// BenchmarkAPIKey is the hot path: read the header, hash, look up, set the principal, remove
// the header. Budget: < 1 µs and 0 allocations.
func BenchmarkAPIKey(b *testing.B) {
	p := policytest.MustBuild(b, Kind, `{}`, withConsumers)
	h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	ex := &policy.Exchange{}
	r := httptest.NewRequest("GET", "/x", nil)
	r = r.WithContext(policy.WithExchange(r.Context(), ex))
	hdr, val := r.Header, []string{acmeKey}
	b.ReportAllocs()
	for b.Loop() {
		hdr["X-Api-Key"] = val
		ex.Principal = nil
		if err := h.ServeHTTP(nil, r); err != nil {
			b.Fatal(err)
		}
	}
}
