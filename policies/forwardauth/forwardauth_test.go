package forwardauth

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/consumer"
	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func directory() policy.Consumers {
	return consumer.New([]*config.Consumer{
		{Name: "acme", Groups: []string{"partners"}, Plan: "pro"},
	})
}

// authService is a loopback auth service that records what it was asked.
type authService struct {
	*httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	last  *http.Request
	body  []byte
}

func newAuthService(t testing.TB, answer http.HandlerFunc) *authService {
	t.Helper()
	a := &authService{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.calls.Add(1)
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.last, a.body = r, b
		a.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *authService) request() (*http.Request, []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last, a.body
}

// build builds an instance with a test pool and the consumer directory, closed at cleanup.
func buildPolicy(t testing.TB, raw string, opts ...func(*policy.BuildContext)) policy.Policy {
	t.Helper()
	pool := &policytest.Pool{}
	opts = append([]func(*policy.BuildContext){func(bc *policy.BuildContext) { bc.Pool, bc.Consumers = pool, directory() }}, opts...)
	p := policytest.MustBuild(t, Kind, raw, opts...)
	t.Cleanup(func() {
		_ = p.(policy.Closer).Close()
		if pool.Len() != 0 {
			t.Errorf("the pool still holds %d objects after Close", pool.Len())
		}
	})
	return p
}

func cfg(url, rest string) string {
	if rest != "" {
		rest = ", " + rest
	}
	return `{"url": "` + url + `/verify"` + rest + `}`
}

func TestForwardAuthAllows(t *testing.T) {
	t.Parallel()
	auth := newAuthService(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer alice":
			w.Header().Set("X-Auth-User", "alice")
			w.Header().Add("X-Auth-Groups", "admins")
			w.Header().Add("X-Auth-Groups", "ops")
		case "Bearer acme":
			w.Header().Set("X-Auth-User", "acme")
		}
		w.WriteHeader(http.StatusNoContent)
	})
	p := buildPolicy(t, cfg(auth.URL, `"response_headers": ["X-Auth-User", "x-auth-groups"], "identity_header": "X-Auth-User"`))
	tests := []struct {
		name      string
		auth      string
		principal string
		consumer  bool
		user      string
		groups    string
	}{
		{"identity", "Bearer alice", "alice", false, "alice", "admins, ops"},
		{"consumer", "Bearer acme", "acme", true, "acme", ""},
		{"no identity", "Bearer anyone", "", false, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/orders", nil)
			r.Header.Set("Authorization", tc.auth)
			// Forgeries, and an attempt to have hop-by-hop removal delete the real headers.
			r.Header.Set("X-Auth-User", "mallory")
			r.Header.Set("X-Auth-Groups", "root")
			r.Header.Set("Connection", "X-Auth-User, X-Auth-Groups")
			ex := &policy.Exchange{}
			res := policytest.Serve(p, r, ex, nil)
			if res.Err != nil || !res.Reached {
				t.Fatalf("got %v (reached %v), want it through", res.Err, res.Reached)
			}
			seen := res.Seen.Header
			if got := seen.Values("X-Auth-User"); strings.Join(got, "|") != tc.user {
				t.Errorf("X-Auth-User %q, want %q", got, tc.user)
			}
			if got := seen.Values("X-Auth-Groups"); strings.Join(got, "|") != tc.groups {
				t.Errorf("X-Auth-Groups %q, want %q", got, tc.groups)
			}
			for _, name := range []string{"X-Auth-User", "X-Auth-Groups"} {
				if c := seen.Get("Connection"); seen.Get(name) != "" && strings.Contains(c, name) {
					t.Errorf("Connection still names %s, which the gateway set: %q", name, c)
				}
			}
			if res.Seen.Header.Get("Authorization") != tc.auth {
				t.Errorf("the credential was not kept for the upstream")
			}
			switch {
			case tc.principal == "" && ex.Principal != nil:
				t.Errorf("principal %+v, want none", ex.Principal)
			case tc.principal != "" && (ex.Principal == nil || ex.Principal.ID != tc.principal || ex.Principal.Method != "forward_auth"):
				t.Errorf("principal %+v, want %s by forward_auth", ex.Principal, tc.principal)
			case tc.consumer && (ex.Principal.Consumer == nil || ex.Principal.Plan != "pro" || len(ex.Principal.Groups) != 1):
				t.Errorf("principal %+v is not mapped to the consumer", ex.Principal)
			}
		})
	}
}

func TestForwardAuthPassesRefusals(t *testing.T) {
	t.Parallel()
	var loginHits atomic.Int64
	login := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { loginHits.Add(1) }))
	t.Cleanup(login.Close)
	problem := `{"error": "invalid_token", "hint": "<b>not html-escaped</b>"}` + "\n"
	auth := newAuthService(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.Header.Get("Authorization") {
		case "":
			h.Set("Location", login.URL+"/login?rd=%2Forders")
			h.Add("Set-Cookie", "csrf=abc; Path=/; HttpOnly")
			h.Add("Set-Cookie", "rd=/orders; Path=/")
			h.Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusFound)
			_, _ = io.WriteString(w, `<a href="/login">login</a>`)
		case "Bearer expired":
			h.Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token"`)
			h.Set("Content-Type", "application/json")
			h.Set("Connection", "X-Internal")
			h.Set("X-Internal", "auth-node-7")
			h.Set("Keep-Alive", "timeout=5")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, problem)
		case "Bearer etag":
			h.Set("ETag", `"v1"`)
			w.WriteHeader(http.StatusNotModified)
		default:
			w.WriteHeader(http.StatusForbidden)
		}
	})
	p := buildPolicy(t, cfg(auth.URL, `"response_headers": ["X-Auth-User"], "identity_header": "X-Auth-Sub"`))
	tests := []struct {
		name   string
		auth   string
		status int
		header map[string][]string
		body   string
	}{
		{"login redirect", "", http.StatusFound, map[string][]string{
			"Location":     {login.URL + "/login?rd=%2Forders"},
			"Set-Cookie":   {"csrf=abc; Path=/; HttpOnly", "rd=/orders; Path=/"},
			"Content-Type": {"text/html; charset=utf-8"},
		}, `<a href="/login">login</a>`},
		{"challenge", "Bearer expired", http.StatusUnauthorized, map[string][]string{
			"Www-Authenticate": {`Bearer realm="api", error="invalid_token"`},
			"Content-Type":     {"application/json"},
			"X-Internal":       nil, "Connection": nil, "Keep-Alive": nil,
		}, problem},
		{"forbidden", "Bearer someone", http.StatusForbidden, nil, ""},
		{"not modified", "Bearer etag", http.StatusNotModified, map[string][]string{"Etag": {`"v1"`}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/orders", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			r.Header.Set("X-Auth-User", "mallory")
			r.Header.Set("X-Auth-Sub", "mallory")
			ex := &policy.Exchange{}
			res := policytest.Serve(p, r, ex, nil)
			if res.Err != nil || res.Reached {
				t.Fatalf("got %v (reached %v), want the refusal written", res.Err, res.Reached)
			}
			rec := res.Rec
			if rec.Code != tc.status || rec.Body.String() != tc.body {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tc.status, tc.body)
			}
			for name, want := range tc.header {
				if got := rec.Header().Values(name); strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
			wantLength := strconv.Itoa(len(tc.body))
			if tc.status == http.StatusNotModified {
				wantLength = ""
			}
			if got := rec.Header().Get("Content-Length"); got != wantLength {
				t.Errorf("Content-Length %q, want %q", got, wantLength)
			}
			if ex.DeniedBy != "routes/test/forward_auth#0" || ex.ErrorCode != "forward_auth_denied" {
				t.Errorf("denial recorded as %q/%q", ex.DeniedBy, ex.ErrorCode)
			}
			if ex.Principal != nil {
				t.Errorf("principal %+v on a refusal", ex.Principal)
			}
			if r.Header.Get("X-Auth-User") != "" || r.Header.Get("X-Auth-Sub") != "" {
				t.Errorf("a forged header survived a refusal: %v", r.Header)
			}
		})
	}
	if n := loginHits.Load(); n != 0 {
		t.Errorf("the login page was fetched %d times: redirects must not be followed", n)
	}
}

func TestForwardAuthRequest(t *testing.T) {
	t.Parallel()
	auth := newAuthService(t, func(w http.ResponseWriter, r *http.Request) {})
	p := buildPolicy(t, cfg(auth.URL, `"request_headers": ["Authorization", "Cookie", "X-Tenant"]`))
	r := httptest.NewRequest("DELETE", "http://api.example.com/orders/7?force=true&x=%2F", nil)
	r.Header.Set("Authorization", "Bearer t")
	r.Header.Set("Cookie", "session=s1")
	r.Header.Add("X-Tenant", "a")
	r.Header.Add("X-Tenant", "b")
	r.Header.Set("X-Other", "not for the auth service")
	r.Header.Set("User-Agent", "curl/8")
	ex := &policy.Exchange{ClientIP: netip.MustParseAddr("203.0.113.7"), RequestID: "req-42"}
	if res := policytest.Serve(p, r, ex, nil); res.Err != nil || !res.Reached {
		t.Fatalf("got %v (reached %v)", res.Err, res.Reached)
	}
	got, _ := auth.request()
	if got.Method != "GET" || got.URL.Path != "/verify" {
		t.Errorf("auth request %s %s, want GET /verify", got.Method, got.URL.Path)
	}
	want := map[string]string{
		"X-Forwarded-Method": "DELETE",
		"X-Forwarded-Proto":  "http",
		"X-Forwarded-Host":   "api.example.com",
		"X-Forwarded-Uri":    "/orders/7?force=true&x=%2F",
		"X-Forwarded-For":    "203.0.113.7",
		"X-Request-Id":       "req-42",
		"Authorization":      "Bearer t",
		"Cookie":             "session=s1",
		"X-Tenant":           "a|b",
		"X-Other":            "",
		"User-Agent":         "limen-forward-auth",
	}
	for name, v := range want {
		if g := strings.Join(got.Header.Values(name), "|"); g != v {
			t.Errorf("auth request %s: %q, want %q", name, g, v)
		}
	}

	// A client's own forwarding headers never reach the auth service, and neither does a
	// header the client marked hop-by-hop.
	r = httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("X-Forwarded-For", "6.6.6.6")
	r.Header.Set("X-Request-Id", "forged")
	r.Header.Set("Cookie", "session=s1")
	r.Header.Set("Connection", "cookie")
	ex = &policy.Exchange{ClientIP: netip.MustParseAddr("2001:db8::1")}
	if res := policytest.Serve(p, r, ex, nil); res.Err != nil {
		t.Fatal(res.Err)
	}
	got, _ = auth.request()
	if g := got.Header.Values("X-Forwarded-For"); len(g) != 1 || g[0] != "2001:db8::1" {
		t.Errorf("X-Forwarded-For %q, want only the trusted client IP", g)
	}
	if g := got.Header.Get("X-Request-Id"); g != "" {
		t.Errorf("X-Request-Id %q: a client's id was forwarded", g)
	}
	if g := got.Header.Get("Cookie"); g != "" {
		t.Errorf("a hop-by-hop Cookie was copied: %q", g)
	}
}

func TestForwardAuthBody(t *testing.T) {
	t.Parallel()
	auth := newAuthService(t, func(w http.ResponseWriter, r *http.Request) {})
	p := buildPolicy(t, cfg(auth.URL, `"method": "POST", "forward_body": true, "max_body": "1KiB"`))
	payload := strings.Repeat("0123456789abcdef", 64) // exactly 1KiB
	tests := []struct {
		name    string
		body    string
		chunked bool
		status  int
	}{
		{"declared length", payload, false, 0},
		{"unknown length", payload, true, 0},
		{"empty", "", false, 0},
		{"declared too large", payload + "x", false, http.StatusRequestEntityTooLarge},
		{"unknown length too large", payload + "x", true, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("PUT", "/docs/1", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/json")
			if tc.chunked {
				r.Body = io.NopCloser(strings.NewReader(tc.body)) // hide the length
				r.ContentLength = -1
			}
			before := auth.calls.Load()
			var upstream []byte
			res := policytest.Serve(p, r, nil, func(w http.ResponseWriter, r *http.Request) error {
				var err error
				upstream, err = io.ReadAll(r.Body)
				if r.ContentLength != int64(len(upstream)) {
					t.Errorf("upstream Content-Length %d for %d bytes", r.ContentLength, len(upstream))
				}
				return err
			})
			if tc.status != 0 {
				if pe := policytest.PolicyError(res.Err); pe == nil || pe.Status != tc.status || res.Reached {
					t.Fatalf("got %v (reached %v), want %d", res.Err, res.Reached, tc.status)
				}
				if auth.calls.Load() != before {
					t.Errorf("the auth service was asked about a body that is too large")
				}
				return
			}
			if res.Err != nil || !res.Reached {
				t.Fatalf("got %v (reached %v)", res.Err, res.Reached)
			}
			if string(upstream) != tc.body {
				t.Errorf("the upstream got %d bytes, want %d", len(upstream), len(tc.body))
			}
		})
	}
	// Sequentially, so the recorded auth request is this one's.
	t.Run("auth service sees the body", func(t *testing.T) {
		r := httptest.NewRequest("PATCH", "/docs/1", strings.NewReader(`{"a":1}`))
		r.Header.Set("Content-Type", "application/merge-patch+json")
		res := policytest.Serve(p, r, nil, nil)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		got, body := auth.request()
		if got.Method != "POST" || string(body) != `{"a":1}` || got.Header.Get("Content-Type") != "application/merge-patch+json" {
			t.Errorf("auth request %s %q (%s)", got.Method, body, got.Header.Get("Content-Type"))
		}
	})
}

func TestForwardAuthUnavailable(t *testing.T) {
	t.Parallel()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	release := make(chan struct{})
	slow := newAuthService(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before slow.Close
	huge := newAuthService(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
		}
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<20))
	})
	tests := []struct {
		name, config, auth string
	}{
		{"down", cfg(downURL, ""), "Bearer t"},
		{"slow", cfg(slow.URL, `"timeout": "50ms"`), "Bearer t"},
		{"huge allowing answer", cfg(huge.URL, ""), "Bearer t"},
		{"huge refusal", cfg(huge.URL, ""), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &policytest.WarnCounter{}
			p := buildPolicy(t, tc.config, func(bc *policy.BuildContext) { bc.Logger = slog.New(logs) })
			for range 3 {
				r := httptest.NewRequest("GET", "/x", nil)
				if tc.auth != "" {
					r.Header.Set("Authorization", tc.auth)
				}
				ex := &policy.Exchange{}
				res := policytest.Serve(p, r, ex, nil)
				pe := policytest.PolicyError(res.Err)
				if pe == nil || pe.Status != http.StatusServiceUnavailable || pe.Code != "auth_unavailable" || res.Reached {
					t.Fatalf("got %v (reached %v), want 503 auth_unavailable", res.Err, res.Reached)
				}
				if pe.Header.Get("Retry-After") == "" || pe.Err == nil {
					t.Errorf("503 without Retry-After or cause: %+v", pe)
				}
				if res.Rec.Body.Len() != 0 {
					t.Errorf("the auth service's answer leaked: %d bytes", res.Rec.Body.Len())
				}
			}
			if n := logs.Warns(); n != 1 {
				t.Errorf("%d warnings for one outage, want 1", n)
			}
		})
	}
}

// TestForwardAuthClientGone: a client that went away is not the auth service's failure and
// is not logged as one.
func TestForwardAuthClientGone(t *testing.T) {
	t.Parallel()
	auth := newAuthService(t, func(w http.ResponseWriter, r *http.Request) {})
	logs := &policytest.WarnCounter{}
	p := buildPolicy(t, cfg(auth.URL, ""), func(bc *policy.BuildContext) { bc.Logger = slog.New(logs) })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequestWithContext(ctx, "GET", "/x", nil)
	res := policytest.Serve(p, r, nil, nil)
	if pe := policytest.PolicyError(res.Err); pe == nil || pe.Code != "auth_unavailable" || res.Reached {
		t.Fatalf("got %v (reached %v), want 503", res.Err, res.Reached)
	}
	if n := logs.Warns(); n != 0 {
		t.Errorf("%d warnings for a client that went away", n)
	}
}

func TestForwardAuthCache(t *testing.T) {
	t.Parallel()
	auth := newAuthService(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer bad" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Auth-User", strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	})
	p := buildPolicy(t, cfg(auth.URL, `"response_headers": ["X-Auth-User"], "identity_header": "X-Auth-User", "cache_ttl": "1h"`))
	serve := func(token, path string) (*policy.Exchange, policytest.Result) {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		r.Header.Set("X-Auth-User", "mallory")
		ex := &policy.Exchange{}
		return ex, policytest.Serve(p, r, ex, nil)
	}
	steps := []struct {
		token, path string
		calls       int64
		status      int
	}{
		{"alice", "/a", 1, 200},
		{"alice", "/a", 1, 200}, // cached
		{"bob", "/a", 2, 200},   // another credential is asked about
		{"alice", "/b", 3, 200}, // another path too
		{"bob", "/a", 3, 200},
		{"bad", "/a", 4, 401},
		{"bad", "/a", 5, 401}, // refusals are never cached
	}
	for i, s := range steps {
		ex, res := serve(s.token, s.path)
		if got := auth.calls.Load(); got != s.calls {
			t.Errorf("step %d: %d calls, want %d", i, got, s.calls)
		}
		if res.Rec.Code != s.status || res.Err != nil {
			t.Errorf("step %d: %d %v, want %d", i, res.Rec.Code, res.Err, s.status)
		}
		if s.status == 200 {
			if ex.Principal == nil || ex.Principal.ID != s.token || res.Seen.Header.Get("X-Auth-User") != s.token {
				t.Errorf("step %d: principal %+v, header %q, want %s", i, ex.Principal, res.Seen.Header.Get("X-Auth-User"), s.token)
			}
		}
	}
}

func TestForwardAuthCA(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "auth-ca.pem"), pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	inDir := func(bc *policy.BuildContext) { bc.BaseDir = dir }

	p := buildPolicy(t, cfg(srv.URL, `"ca": "auth-ca.pem"`), inDir)
	if res := policytest.Serve(p, httptest.NewRequest("GET", "/x", nil), nil, nil); res.Err != nil || !res.Reached {
		t.Errorf("with the CA: %v (reached %v)", res.Err, res.Reached)
	}
	p = buildPolicy(t, cfg(srv.URL, ""), inDir)
	res := policytest.Serve(p, httptest.NewRequest("GET", "/x", nil), nil, nil)
	if pe := policytest.PolicyError(res.Err); pe == nil || pe.Code != "auth_unavailable" || res.Reached {
		t.Errorf("without the CA: %v (reached %v), want 503", res.Err, res.Reached)
	}
	if _, err := policytest.Build(Kind, cfg(srv.URL, `"ca": "missing.pem"`), inDir); err == nil {
		t.Error("a missing CA file built")
	}
}

// TestForwardAuthPool: instances with the same URL, CA and timeout share one client, and the
// last Close releases it.
func TestForwardAuthPool(t *testing.T) {
	t.Parallel()
	pool := &policytest.Pool{}
	withPool := func(bc *policy.BuildContext) { bc.Pool = pool }
	a := policytest.MustBuild(t, Kind, `{"url": "http://127.0.0.1:1/verify"}`, withPool)
	b := policytest.MustBuild(t, Kind, `{"url": "http://127.0.0.1:1/verify", "response_headers": ["X-User"]}`, withPool)
	c := policytest.MustBuild(t, Kind, `{"url": "http://127.0.0.1:1/verify", "timeout": "1s"}`, withPool)
	if pool.Len() != 2 {
		t.Fatalf("pool holds %d clients, want 2", pool.Len())
	}
	for _, p := range []policy.Policy{a, b, c} {
		_ = p.(policy.Closer).Close()
	}
	if pool.Len() != 0 {
		t.Errorf("pool holds %d clients after Close", pool.Len())
	}
	// Without a pool the instance keeps a private client.
	p := policytest.MustBuild(t, Kind, `{"url": "http://127.0.0.1:1/verify"}`)
	_ = p.(policy.Closer).Close()
}

func TestForwardAuthConfig(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		`{}`,
		`{"url": "/verify"}`,
		`{"url": "auth.internal/verify"}`,
		`{"url": "ftp://auth.internal/verify"}`,
		`{"url": "http://user:pw@auth.internal/verify"}`,
		`{"url": "http://auth.internal/verify", "method": "get"}`,
		`{"url": "http://auth.internal/verify", "method": "CONNECT"}`,
		`{"url": "http://auth.internal/verify", "forward_body": true}`,
		`{"url": "http://auth.internal/verify", "request_headers": ["Connection"]}`,
		`{"url": "http://auth.internal/verify", "request_headers": ["X-Forwarded-For"]}`,
		`{"url": "http://auth.internal/verify", "request_headers": ["Bad Name"]}`,
		`{"url": "http://auth.internal/verify", "response_headers": ["Transfer-Encoding"]}`,
		`{"url": "http://auth.internal/verify", "response_headers": ["Authorization"]}`,
		`{"url": "http://auth.internal/verify", "identity_header": "cookie"}`,
		`{"url": "http://auth.internal/verify", "identity_header": "X:User"}`,
		`{"url": "http://auth.internal/verify", "ca": "ca.pem"}`,
		`{"url": "http://auth.internal/verify", "timeout": "0s"}`,
		`{"url": "http://auth.internal/verify", "timeout": 5}`,
		`{"url": "http://auth.internal/verify", "max_body": "1GiB"}`,
		`{"url": "http://auth.internal/verify", "max_body": "64kb"}`,
		`{"url": "http://auth.internal/verify", "cache_ttl": "-1s"}`,
		`{"url": "http://auth.internal/verify", "unknown": true}`,
		`{"url": "http://auth.internal/verify", "optional": true}`,
	} {
		if p, err := policytest.Build(Kind, bad); err == nil {
			_ = p.(policy.Closer).Close()
			t.Errorf("%s: built", bad)
		}
	}
	var c Config
	c.URL = "https://auth.internal/verify"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Method != "GET" || strings.Join(c.RequestHeaders, ",") != "Authorization,Cookie" || c.Timeout.D().String() != "5s" || c.MaxBody != 64<<10 || c.CacheTTL.D() != 0 {
		t.Errorf("defaults: %+v", c)
	}
	c = Config{URL: "https://auth.internal/verify", RequestHeaders: []string{}}
	if err := c.Validate(); err != nil || len(c.RequestHeaders) != 0 {
		t.Errorf("an empty request_headers list was replaced: %v %v", c.RequestHeaders, err)
	}
}

func TestDocExamples(t *testing.T) {
	t.Parallel()
	pool := &policytest.Pool{}
	// Building only creates clients; nothing is sent, whatever the examples' hosts.
	policytest.CheckDocExamples(t, "../../docs/policies/forward_auth.md", Kind, func(bc *policy.BuildContext) {
		bc.Pool, bc.Consumers = pool, directory()
	})
}

// BenchmarkForwardAuth is an allowed request against a loopback auth service: building the
// auth request, one keep-alive round trip (the service's own work is in the figures too, as it
// runs in this process), and applying the answer; and the same request answered from the cache.
func BenchmarkForwardAuth(b *testing.B) {
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Auth-User", "alice")
	}))
	defer auth.Close()
	for _, bc := range []struct{ name, extra string }{
		{"round_trip", ""},
		{"cached", `, "cache_ttl": "1h"`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := policytest.MustBuild(b, Kind, cfg(auth.URL, `"response_headers": ["X-Auth-User"], "identity_header": "X-Auth-User"`+bc.extra),
				func(bc *policy.BuildContext) { bc.Pool = &policytest.Pool{} })
			defer p.(policy.Closer).Close()
			h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
			ex := &policy.Exchange{ClientIP: netip.MustParseAddr("203.0.113.7"), RequestID: "req-1"}
			r := httptest.NewRequest("GET", "/orders?page=2", nil)
			r.Header.Set("Authorization", "Bearer t")
			r = r.WithContext(policy.WithExchange(r.Context(), ex))
			b.ReportAllocs()
			for b.Loop() {
				ex.Principal = nil
				if err := h.ServeHTTP(nil, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
