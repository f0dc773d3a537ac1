package introspection

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/consumer"
	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	secretEnv = "LIMEN_TEST_INTROSPECTION_SECRET"
	// clientID and secret hold characters that RFC 6749 §2.3.1's form-encoding changes.
	clientID = "gw:client one"
	secret   = "s3cr3t&/+=%:é"
	issuer   = "https://auth.test/"
)

// authServer is a real HTTPS introspection endpoint on 127.0.0.1 whose answers the test
// controls, recording what the gateway sent.
type authServer struct {
	*httptest.Server
	caFile string
	calls  atomic.Int32

	mu       sync.Mutex
	answers  map[string]map[string]any // token -> response; unknown tokens are inactive
	answer   http.HandlerFunc          // when set, answers every request instead
	lastAuth string
	lastForm url.Values
	lastHdr  http.Header
	lastVerb string
}

func newAuthServer(t testing.TB) *authServer {
	s := &authServer{answers: map[string]map[string]any{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	s.caFile = filepath.Join(t.TempDir(), "ca.pem")
	writeCA(t, s.Server, s.caFile)
	return s
}

func writeCA(t testing.TB, s *httptest.Server, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pemCert(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func pemCert(s *httptest.Server) []byte {
	var b bytes.Buffer
	b.WriteString("-----BEGIN CERTIFICATE-----\n")
	enc := base64.StdEncoding.EncodeToString(s.Certificate().Raw)
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\n-----END CERTIFICATE-----\n")
	return b.Bytes()
}

func (s *authServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/introspect" {
		http.NotFound(w, r)
		return
	}
	s.calls.Add(1)
	_ = r.ParseForm()
	s.mu.Lock()
	s.lastAuth, s.lastForm, s.lastHdr, s.lastVerb = r.Header.Get("Authorization"), r.PostForm, r.Header.Clone(), r.Method
	answer, resp := s.answer, s.answers[r.PostForm.Get("token")]
	s.mu.Unlock()
	if answer != nil {
		answer(w, r)
		return
	}
	if resp == nil {
		resp = map[string]any{"active": false}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *authServer) set(token string, resp map[string]any) {
	s.mu.Lock()
	s.answers[token] = resp
	s.mu.Unlock()
}

func (s *authServer) setAnswer(h http.HandlerFunc) {
	s.mu.Lock()
	s.answer = h
	s.mu.Unlock()
}

// active is a typical answer for an active token; extra overrides members, nil deletes one.
func active(extra map[string]any) map[string]any {
	m := map[string]any{
		"active": true, "sub": "alice", "username": "alice@example.test", "client_id": "web",
		"scope": "orders:read orders:write", "iss": issuer, "aud": []any{"api", "other"},
		"exp": time.Now().Add(time.Hour).Unix(), "token_type": "Bearer",
	}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func directory() policy.Consumers {
	return consumer.New([]*config.Consumer{{Name: "acme", Groups: []string{"partners"}, Plan: "pro"}, {Name: "guest"}})
}

func builder(pool policy.Pool, dir string, log *slog.Logger) func(*policy.BuildContext) {
	return func(bc *policy.BuildContext) {
		bc.Pool, bc.Consumers, bc.BaseDir, bc.Logger = pool, directory(), dir, log
	}
}

// config is a policy config against s; extra is appended to the JSON object.
func (s *authServer) config(extra string) string {
	return fmt.Sprintf(`{"url": %q, "client_id": %q, "client_secret_env": %q, "ca": %q %s}`,
		s.URL+"/introspect", clientID, secretEnv, s.caFile, extra)
}

// newPolicy makes a policy against s with its own pool. The caller has set the secret with
// t.Setenv, so it is not parallel.
func newPolicy(t testing.TB, s *authServer, extra string) *introspector {
	t.Helper()
	p := policytest.MustBuild(t, Kind, s.config(extra), builder(&policytest.Pool{}, t.TempDir(), nil)).(*introspector)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

type outcome struct {
	status int
	code   string
	err    *policy.Error
	ex     *policy.Exchange
	res    policytest.Result
}

func call(p policy.Policy, token string, mutate ...func(*http.Request, *policy.Exchange)) outcome {
	r := httptest.NewRequest("GET", "/orders", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	ex := &policy.Exchange{}
	for _, m := range mutate {
		m(r, ex)
	}
	res := policytest.Serve(p, r, ex, nil)
	o := outcome{ex: ex, res: res}
	if pe := policytest.PolicyError(res.Err); pe != nil {
		o.status, o.code, o.err = pe.Status, pe.Code, pe
	}
	return o
}

func (s *authServer) cachedLen(p *introspector) int {
	p.ep.mu.RLock()
	defer p.ep.mu.RUnlock()
	return len(p.ep.results)
}

// TestIntrospectionActive: an active token becomes the principal, its members go upstream as
// asked, the token does not, and the server saw a well-formed, authenticated RFC 7662 request.
func TestIntrospectionActive(t *testing.T) {
	t.Setenv(secretEnv, secret)
	s := newAuthServer(t)
	s.set("tok-alice", active(map[string]any{"ext": map[string]any{"tenant": "t-7"}}))
	p := newPolicy(t, s, `, "audiences": ["api"], "issuer": "`+issuer+`", "forward_claims": {"X-User": "username", "X-Tenant": "ext.tenant", "X-Aud": "aud"}`)

	o := call(p, "tok-alice", func(r *http.Request, _ *policy.Exchange) {
		r.Header.Set("X-User", "spoof@evil.test")
		r.Header.Set("Connection", "X-Tenant")
	})
	if o.status != 0 || !o.res.Reached {
		t.Fatalf("active token: %d %s (%v)", o.status, o.code, o.res.Err)
	}
	pr := o.ex.Principal
	if pr.ID != "alice" || pr.Method != Kind || strings.Join(pr.Scopes, " ") != "orders:read orders:write" || pr.Claims["client_id"] != "web" || pr.Consumer != nil {
		t.Errorf("principal %+v", pr)
	}
	seen := o.res.Seen.Header
	if seen.Get("Authorization") != "" {
		t.Error("the token reached the upstream")
	}
	if seen.Get("X-User") != "alice@example.test" || seen.Get("X-Tenant") != "t-7" || seen.Get("X-Aud") != "api,other" || strings.Contains(seen.Get("Connection"), "X-Tenant") {
		t.Errorf("forwarded claims: %v", seen)
	}

	s.mu.Lock()
	auth, form, hdr, verb := s.lastAuth, s.lastForm, s.lastHdr, s.lastVerb
	s.mu.Unlock()
	if verb != http.MethodPost || hdr.Get("Content-Type") != "application/x-www-form-urlencoded" || hdr.Get("Accept") != "application/json" {
		t.Errorf("request: %s %v", verb, hdr)
	}
	if form.Get("token") != "tok-alice" || form.Get("token_type_hint") != "access_token" || len(form) != 2 {
		t.Errorf("form %v", form)
	}
	// RFC 6749 §2.3.1: id and secret are form-encoded, then joined with ":" and base64-encoded.
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic "))
	if err != nil || !strings.HasPrefix(auth, "Basic ") {
		t.Fatalf("client authentication %q", auth)
	}
	id, sec, _ := strings.Cut(string(raw), ":")
	id, _ = url.QueryUnescape(id)
	sec, _ = url.QueryUnescape(sec)
	if id != clientID || sec != secret {
		t.Errorf("client credentials %q:%q, want %q:%q", id, sec, clientID, secret)
	}

	// The cache holds the token's digest, never the token.
	key := sha256.Sum256([]byte("tok-alice"))
	p.ep.mu.RLock()
	_, ok := p.ep.results[key]
	for k := range p.ep.results {
		if strings.Contains(string(k[:]), "tok-alice") {
			t.Error("the cache holds the raw token")
		}
	}
	p.ep.mu.RUnlock()
	if !ok {
		t.Error("the active answer was not cached under the token's SHA-256")
	}

	kept := newPolicy(t, s, `, "keep_token": true, "token_type_hint": "refresh_token"`)
	if o := call(kept, "tok-alice"); o.status != 0 || o.res.Seen.Header.Get("Authorization") != "Bearer tok-alice" {
		t.Errorf("keep_token: %d, upstream Authorization %q", o.status, o.res.Seen.Header.Get("Authorization"))
	}
	s.mu.Lock()
	if hint := s.lastForm.Get("token_type_hint"); hint != "refresh_token" {
		t.Errorf("token_type_hint %q", hint)
	}
	s.mu.Unlock()
}

func TestIntrospectionRefusals(t *testing.T) {
	t.Setenv(secretEnv, secret)
	s := newAuthServer(t)
	p := newPolicy(t, s, "")

	o := call(p, "")
	if o.status != 401 || o.code != "token_missing" || o.err.Header.Get("Www-Authenticate") != `Bearer realm="limen"` || o.res.Reached {
		t.Fatalf("missing token: %d %s %v", o.status, o.code, o.err)
	}
	o = call(p, "tok-dead")
	if o.status != 401 || o.code != "token_invalid" || o.err.Header.Get("Www-Authenticate") != `Bearer realm="limen", error="invalid_token"` || o.res.Reached {
		t.Fatalf("inactive token: %d %s %v", o.status, o.code, o.err)
	}
	if strings.Contains(o.err.Detail, "active") {
		t.Errorf("the detail tells the client why: %q", o.err.Detail)
	}
	before := s.calls.Load()
	for name, tok := range map[string]string{"oversized": strings.Repeat("x", maxTokenBytes+1), "empty bearer": " "} {
		if o := call(p, tok); o.status != 401 || o.code != "token_invalid" {
			t.Errorf("%s: %d %s", name, o.status, o.code)
		}
	}
	if n := s.calls.Load() - before; n != 0 {
		t.Errorf("oversized and empty tokens cost %d calls, want 0", n)
	}
	// The largest accepted token is asked about.
	if o := call(p, strings.Repeat("y", maxTokenBytes)); o.status != 401 || s.calls.Load() != before+1 {
		t.Errorf("a token of %d bytes: %d, calls %d", maxTokenBytes, o.status, s.calls.Load()-before)
	}

	custom := newPolicy(t, s, `, "realm": "orders \"v2\""`)
	if o := call(custom, ""); o.err.Header.Get("Www-Authenticate") != `Bearer realm="orders \"v2\""` {
		t.Errorf("realm: %v", o.err.Header)
	}
}

func TestIntrospectionCache(t *testing.T) {
	t.Setenv(secretEnv, secret)
	s := newAuthServer(t)
	now := time.Now()
	s.set("tok-ok", active(nil))
	s.set("tok-expired", active(map[string]any{"exp": now.Add(-time.Minute).Unix()}))
	s.set("tok-soon", active(map[string]any{"exp": now.Add(30 * time.Second).Unix()}))
	s.set("tok-bad-exp", active(map[string]any{"exp": "tomorrow"}))
	s.set("tok-large", active(map[string]any{"pad": strings.Repeat("p", maxCachedBytes)}))

	count := func(p *introspector, token string, n int) int32 {
		t.Helper()
		before := s.calls.Load()
		for range n {
			call(p, token)
		}
		return s.calls.Load() - before
	}

	p := newPolicy(t, s, "")
	tests := []struct {
		token string
		calls int32 // for 3 requests
		ok    bool
	}{
		{"tok-ok", 1, true},
		{"tok-expired", 3, true}, // the server says active; exp in the past only stops caching
		{"tok-bad-exp", 3, true},
		{"tok-large", 3, true},
		{"tok-soon", 1, true},
		{"tok-dead", 1, false}, // negative cache
	}
	for _, tc := range tests {
		if n := count(p, tc.token, 3); n != tc.calls {
			t.Errorf("%s: 3 requests made %d calls, want %d", tc.token, n, tc.calls)
		}
		if o := call(p, tc.token); (o.status == 0) != tc.ok {
			t.Errorf("%s: status %d", tc.token, o.status)
		}
	}
	// An answer is never kept past the token's exp, and one past it is not kept at all.
	p.ep.mu.RLock()
	c := p.ep.results[sha256.Sum256([]byte("tok-soon"))]
	_, expiredKept := p.ep.results[sha256.Sum256([]byte("tok-expired"))]
	p.ep.mu.RUnlock()
	if expiredKept {
		t.Error("an answer whose exp has passed was cached")
	}
	if want := time.Unix(now.Add(30*time.Second).Unix(), 0); !c.expires.Equal(want) {
		t.Errorf("tok-soon cached until %v, want its exp %v", c.expires, want)
	}

	// Caches turned off: every request asks.
	off := newPolicy(t, s, `, "cache_ttl": "0s", "negative_cache_ttl": "0s"`)
	if n := count(off, "tok-ok", 3); n != 3 {
		t.Errorf("cache_ttl 0s: %d calls, want 3", n)
	}
	if n := count(off, "tok-dead", 3); n != 3 {
		t.Errorf("negative_cache_ttl 0s: %d calls, want 3", n)
	}
	if n := s.cachedLen(off); n != 0 {
		t.Errorf("cache off holds %d answers", n)
	}
}

// TestIntrospectionCacheBounded: the cache never outgrows cache_size, and expired answers go
// before live ones.
func TestIntrospectionCacheBounded(t *testing.T) {
	t.Setenv(secretEnv, secret)
	s := newAuthServer(t)
	for i := range 10 {
		s.set(fmt.Sprintf("tok-%d", i), active(nil))
	}
	p := newPolicy(t, s, `, "cache_size": 3`)
	for i := range 10 {
		if o := call(p, fmt.Sprintf("tok-%d", i)); o.status != 0 {
			t.Fatalf("tok-%d: %d", i, o.status)
		}
		if n := s.cachedLen(p); n > 3 {
			t.Fatalf("cache grew to %d answers, bound 3", n)
		}
	}

	ep, err := newEndpoint(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	now := time.Now()
	live := &result{active: true}
	ep.remember([32]byte{1}, &result{}, now, now.Add(-time.Second), 3)
	ep.remember([32]byte{2}, live, now, now.Add(time.Hour), 3)
	ep.remember([32]byte{3}, &result{}, now, now.Add(-time.Second), 3)
	ep.remember([32]byte{4}, live, now, now.Add(time.Hour), 3)
	if len(ep.results) != 2 || ep.results[[32]byte{2}].res != live || ep.results[[32]byte{4}].res != live {
		t.Errorf("a full cache kept %d answers; want the two live ones", len(ep.results))
	}
}

// TestIntrospectionCoalesces: 20 concurrent requests with the same token make one call. The
// server holds its answer until all 20 wait on it, and the cache is off, so only coalescing can
// explain a single call.
func TestIntrospectionCoalesces(t *testing.T) {
	t.Setenv(secretEnv, secret)
	s := newAuthServer(t)
	release := make(chan struct{})
	s.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_ = json.NewEncoder(w).Encode(active(nil))
	})
	p := newPolicy(t, s, `, "cache_ttl": "0s", "timeout": "1m"`)
	const n = 20
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range n {
		wg.Go(func() {
			if o := call(p, "tok-shared"); o.status == 0 && o.ex.Principal.ID == "alice" {
				ok.Add(1)
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.ep.waiting.Load() < n {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("only %d of %d requests are waiting", p.ep.waiting.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if c := s.calls.Load(); c != 1 {
		t.Errorf("%d concurrent requests made %d calls, want 1", n, c)
	}
	if ok.Load() != n {
		t.Errorf("%d of %d requests authenticated", ok.Load(), n)
	}
}

// syncBuffer is a log sink for a logger used from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestIntrospectionServerFailures: whatever goes wrong at the server, uncached tokens get 503
// auth_unavailable (not 401, not let in), nothing is cached, and the log gets one warning.
func TestIntrospectionServerFailures(t *testing.T) {
	t.Setenv(secretEnv, secret)
	var redirected atomic.Int32
	tests := []struct {
		name   string
		answer http.HandlerFunc
		down   bool
	}{
		{name: "down", down: true},
		{name: "slow", answer: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }},
		// Failure statuses count as failures whatever the body says.
		{name: "500", answer: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(active(nil))
		}},
		{name: "401 for the gateway", answer: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(active(map[string]any{"error": "invalid_client"}))
		}},
		{name: "redirect", answer: func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Has("moved") {
				redirected.Add(1)
				_ = json.NewEncoder(w).Encode(active(nil))
				return
			}
			http.Redirect(w, r, "/introspect?moved", http.StatusTemporaryRedirect)
		}},
		{name: "huge body", answer: func(w http.ResponseWriter, r *http.Request) {
			// Valid JSON, 2 MiB of it, whose first MiB is valid too: only the cap stops it.
			_, _ = w.Write([]byte(`{"active": true, "sub": "alice"}`))
			chunk := bytes.Repeat([]byte(" "), 64<<10)
			for range 2 * maxResponseBytes / len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
		{name: "not JSON", answer: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>login</html>"))
		}},
		{name: "no active", answer: func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"sub": "alice"}`)) }},
		{name: "active not a boolean", answer: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"active": "true", "sub": "alice"}`))
		}},
		{name: "two objects", answer: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"active": false} {"active": true, "sub": "alice"}`))
		}},
		{name: "array", answer: func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`[{"active": true}]`)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newAuthServer(t)
			s.setAnswer(tc.answer)
			logs := &syncBuffer{}
			log := slog.New(slog.NewTextHandler(logs, nil))
			p := policytest.MustBuild(t, Kind, s.config(`, "timeout": "300ms"`), builder(&policytest.Pool{}, "", log)).(*introspector)
			defer p.Close()
			if tc.down {
				s.Close()
			}
			for range 3 {
				o := call(p, "tok-alice")
				if o.status != http.StatusServiceUnavailable || o.code != "auth_unavailable" || o.res.Reached {
					t.Fatalf("status %d %s (reached %v), want 503 auth_unavailable", o.status, o.code, o.res.Reached)
				}
				if o.err.Header.Get("Retry-After") == "" || o.err.Err == nil {
					t.Errorf("503 without Retry-After or cause: %+v", o.err)
				}
			}
			if n := s.cachedLen(p); n != 0 {
				t.Errorf("a failure was cached (%d answers)", n)
			}
			if n := strings.Count(logs.String(), "token introspection failed"); n != 1 {
				t.Errorf("3 failures logged %d warnings, want 1:\n%s", n, logs)
			}
			if strings.Contains(logs.String(), "tok-alice") || strings.Contains(logs.String(), secret) {
				t.Errorf("the log holds the token or the secret:\n%s", logs)
			}
		})
	}
	if n := redirected.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

// TestIntrospectionRecovers: failures are not remembered, so the first request after the server
// comes back (same address, restarted) is answered.
func TestIntrospectionRecovers(t *testing.T) {
	t.Setenv(secretEnv, secret)
	s := newAuthServer(t)
	s.set("tok-alice", active(nil))
	p := newPolicy(t, s, "")

	s.setAnswer(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	})
	if o := call(p, "tok-alice"); o.status != 503 {
		t.Fatalf("server failing: %d", o.status)
	}
	s.setAnswer(nil)
	if o := call(p, "tok-alice"); o.status != 0 {
		t.Fatalf("server back: %d %s", o.status, o.code)
	}

	// Down for real: the listener is gone. Then a new server on the same address.
	addr := s.Listener.Addr().String()
	s.Close()
	if o := call(p, "tok-other"); o.status != 503 {
		t.Fatalf("server down: %d", o.status)
	}
	if o := call(p, "tok-alice"); o.status != 0 {
		t.Errorf("a cached answer is served while the server is down: %d", o.status)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("relisten on %s: %v", addr, err)
	}
	s2 := &authServer{answers: map[string]map[string]any{"tok-other": active(map[string]any{"sub": "bob"})}}
	s2.Server = httptest.NewUnstartedServer(http.HandlerFunc(s2.serve))
	s2.Listener.Close()
	s2.Listener = l
	s2.StartTLS() // httptest serves the same certificate, so the CA file still fits
	defer s2.Close()
	if o := call(p, "tok-other"); o.status != 0 || o.ex.Principal.ID != "bob" {
		t.Fatalf("after the server came back: %d %s (%v)", o.status, o.code, o.res.Err)
	}
}

func TestIntrospectionAudienceAndIssuer(t *testing.T) {
	t.Setenv(secretEnv, secret)
	s := newAuthServer(t)
	p := newPolicy(t, s, `, "audiences": ["api", "admin"], "issuer": "`+issuer+`"`)
	tests := []struct {
		name   string
		answer map[string]any
		status int
	}{
		{"aud list", active(nil), 0},
		{"aud string", active(map[string]any{"aud": "admin"}), 0},
		{"aud mismatch", active(map[string]any{"aud": "billing"}), 401},
		{"aud list mismatch", active(map[string]any{"aud": []any{"billing", "reports"}}), 401},
		{"aud empty list", active(map[string]any{"aud": []any{}}), 401},
		{"no aud", active(map[string]any{"aud": nil}), 401},
		{"aud not a string", active(map[string]any{"aud": map[string]any{"api": true}}), 401},
		{"iss mismatch", active(map[string]any{"iss": "https://evil.test/"}), 401},
		{"iss prefix", active(map[string]any{"iss": strings.TrimSuffix(issuer, "/")}), 401},
		{"no iss", active(map[string]any{"iss": nil}), 401},
	}
	for i, tc := range tests {
		tok := fmt.Sprintf("tok-%d", i)
		s.set(tok, tc.answer)
		if o := call(p, tok); o.status != tc.status || (tc.status != 0 && o.code != "token_invalid") {
			t.Errorf("%s: %d %s, want %d", tc.name, o.status, o.code, tc.status)
		}
	}
}

func TestIntrospectionConsumers(t *testing.T) {
	t.Setenv(secretEnv, secret)
	s := newAuthServer(t)
	s.set("tok-acme", active(map[string]any{"client_id": "acme"}))
	s.set("tok-unknown", active(map[string]any{"client_id": "initech"}))
	s.set("tok-username", active(map[string]any{"sub": nil}))
	s.set("tok-client", active(map[string]any{"sub": nil, "username": nil}))
	s.set("tok-nobody", active(map[string]any{"sub": nil, "username": nil, "client_id": nil}))

	p := newPolicy(t, s, `, "consumer_claim": "client_id"`)
	tests := []struct {
		p      *introspector
		token  string
		status int
		id     string
	}{
		{p, "tok-acme", 0, "acme"},
		{p, "tok-unknown", 0, "alice"},
		{p, "tok-username", 0, "alice@example.test"},
		{p, "tok-client", 0, "web"},
		{p, "tok-nobody", 401, ""},
	}
	strict := newPolicy(t, s, `, "consumer_claim": "client_id", "require_consumer": true`)
	tests = append(tests, []struct {
		p      *introspector
		token  string
		status int
		id     string
	}{
		{strict, "tok-acme", 0, "acme"},
		{strict, "tok-unknown", 401, ""},
		{strict, "tok-nobody", 401, ""},
	}...)
	for _, tc := range tests {
		o := call(tc.p, tc.token)
		if o.status != tc.status {
			t.Errorf("%s (require_consumer %v): %d %s, want %d", tc.token, tc.p.cfg.RequireConsumer, o.status, o.code, tc.status)
			continue
		}
		if tc.status == 0 && o.ex.Principal.ID != tc.id {
			t.Errorf("%s: principal %q, want %q", tc.token, o.ex.Principal.ID, tc.id)
		}
	}
	o := call(p, "tok-acme")
	if pr := o.ex.Principal; pr.Consumer == nil || pr.Plan != "pro" || pr.Groups[0] != "partners" || pr.Method != Kind || len(pr.Scopes) != 2 {
		t.Errorf("consumer principal %+v", pr)
	}
}

// TestIntrospectionAnyOf: with several authentication policies on a route, the first that
// identifies the caller wins; anonymous and optional behave as for api_key and jwt.
func TestIntrospectionAnyOf(t *testing.T) {
	t.Setenv(secretEnv, secret)
	s := newAuthServer(t)
	s.set("tok-alice", active(nil))
	p := newPolicy(t, s, "")
	earlier := &policy.Principal{ID: "acme", Method: "api_key"}
	o := call(p, "tok-alice", func(_ *http.Request, ex *policy.Exchange) { ex.Principal = earlier })
	if o.status != 0 || o.ex.Principal != earlier || s.calls.Load() != 0 || o.res.Seen.Header.Get("Authorization") == "" {
		t.Errorf("an earlier principal was not kept as is: %d %+v, %d calls", o.status, o.ex.Principal, s.calls.Load())
	}
	guest := &policy.Principal{ID: "guest", Method: "anonymous"}
	o = call(p, "tok-alice", func(_ *http.Request, ex *policy.Exchange) { ex.Principal = guest })
	if o.status != 0 || o.ex.Principal.ID != "alice" {
		t.Errorf("an anonymous principal was not replaced: %+v", o.ex.Principal)
	}
	if o := call(p, "", func(_ *http.Request, ex *policy.Exchange) { ex.Principal = guest }); o.status != 0 || o.ex.Principal != guest {
		t.Errorf("no token after an anonymous principal: %d", o.status)
	}

	anon := newPolicy(t, s, `, "anonymous": "guest"`)
	if o := call(anon, ""); o.status != 0 || o.ex.Principal.ID != "guest" || o.ex.Principal.Method != "anonymous" {
		t.Errorf("anonymous: %d %+v", o.status, o.ex.Principal)
	}
	if o := call(anon, "tok-dead"); o.status != 401 {
		t.Errorf("anonymous with a bad token: %d", o.status)
	}
	opt := newPolicy(t, s, `, "optional": true`)
	if o := call(opt, ""); o.status != 0 || o.ex.Principal != nil {
		t.Errorf("optional: %d %+v", o.status, o.ex.Principal)
	}
	if o := call(opt, "tok-dead"); o.status != 401 {
		t.Errorf("optional with a bad token: %d", o.status)
	}
	cookie := newPolicy(t, s, `, "from": [{"cookie": "session"}]`)
	o = call(cookie, "", func(r *http.Request, _ *policy.Exchange) { r.Header.Set("Cookie", "theme=dark; session=tok-alice") })
	if o.status != 0 || o.ex.Principal.ID != "alice" || o.res.Seen.Header.Get("Cookie") != "theme=dark" {
		t.Errorf("cookie: %d, upstream Cookie %q", o.status, o.res.Seen.Header.Get("Cookie"))
	}
	// A spoofed claim header goes even when the request is refused.
	fwd := newPolicy(t, s, `, "forward_claims": {"X-User": "username"}`)
	var seen http.Header
	call(fwd, "", func(r *http.Request, _ *policy.Exchange) { r.Header.Set("X-User", "spoof"); seen = r.Header })
	if seen.Get("X-User") != "" {
		t.Error("a client's X-User survived")
	}
}

// TestIntrospectionSharesEndpoint: routes using the same server, client and CA share one client
// and cache through the Pool, so a reload keeps cached answers; building never calls the server.
func TestIntrospectionSharesEndpoint(t *testing.T) {
	t.Setenv(secretEnv, secret)
	s := newAuthServer(t)
	s.set("tok-alice", active(nil))
	pool := &policytest.Pool{}
	a := policytest.MustBuild(t, Kind, s.config(""), builder(pool, "", nil)).(*introspector)
	b := policytest.MustBuild(t, Kind, s.config(`, "cache_ttl": "1m", "audiences": ["api"]`), builder(pool, "", nil)).(*introspector)
	if s.calls.Load() != 0 {
		t.Fatalf("building called the server %d times", s.calls.Load())
	}
	if pool.Len() != 1 || a.ep != b.ep {
		t.Fatalf("two policies on one server hold %d endpoints", pool.Len())
	}
	other := policytest.MustBuild(t, Kind, strings.Replace(s.config(""), clientID, "another-client", 1), builder(pool, "", nil)).(*introspector)
	if pool.Len() != 2 || other.ep == a.ep {
		t.Error("another client id shares the cache")
	}
	other.Close()

	if o := call(a, "tok-alice"); o.status != 0 {
		t.Fatal(o.status)
	}
	a.Close() // the old snapshot goes; the new one keeps the cache
	if o := call(b, "tok-alice"); o.status != 0 || s.calls.Load() != 1 {
		t.Errorf("after a reload: %d, %d calls, want the cached answer", o.status, s.calls.Load())
	}
	b.Close()
	if pool.Len() != 0 {
		t.Error("the endpoint outlived its last user")
	}

	// Without a pool the policy keeps a private endpoint.
	private := policytest.MustBuild(t, Kind, s.config(""), func(bc *policy.BuildContext) { bc.Consumers = directory() }).(*introspector)
	if o := call(private, "tok-alice"); o.status != 0 {
		t.Errorf("private endpoint: %d", o.status)
	}
	private.Close()
}

func TestIntrospectionConfigErrors(t *testing.T) {
	t.Setenv(secretEnv, secret)
	t.Setenv("LIMEN_TEST_EMPTY_SECRET", "")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "not-a-ca.pem"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := `"url": "https://auth.test/introspect", "client_id": "gw", "client_secret_env": "` + secretEnv + `"`
	tests := map[string]string{
		"http url":           `{"url": "http://auth.test/introspect", "client_id": "gw", "client_secret_env": "` + secretEnv + `"}`,
		"relative url":       `{"url": "/introspect", "client_id": "gw", "client_secret_env": "` + secretEnv + `"}`,
		"credentials in url": `{"url": "https://gw:pw@auth.test/introspect", "client_id": "gw", "client_secret_env": "` + secretEnv + `"}`,
		"missing url":        `{"client_id": "gw", "client_secret_env": "` + secretEnv + `"}`,
		"missing client_id":  `{"url": "https://auth.test/introspect", "client_secret_env": "` + secretEnv + `"}`,
		"missing secret env": `{"url": "https://auth.test/introspect", "client_id": "gw"}`,
		"expansion syntax":   `{"url": "https://auth.test/introspect", "client_id": "gw", "client_secret_env": "${` + secretEnv + `}"}`,
		"unset secret env":   `{"url": "https://auth.test/introspect", "client_id": "gw", "client_secret_env": "LIMEN_TEST_NO_SUCH_VARIABLE"}`,
		"empty secret env":   `{"url": "https://auth.test/introspect", "client_id": "gw", "client_secret_env": "LIMEN_TEST_EMPTY_SECRET"}`,
		"bare number":        `{` + base + `, "timeout": 5}`,
		"negative ttl":       `{` + base + `, "cache_ttl": "-1s"}`,
		"unparsable":         `{` + base + `, "negative_cache_ttl": "soon"}`,
		"zero timeout":       `{` + base + `, "timeout": "0s"}`,
		"huge timeout":       `{` + base + `, "timeout": "10m"}`,
		"negative size":      `{` + base + `, "cache_size": -1}`,
		"unknown field":      `{` + base + `, "audiance": ["api"]}`,
		"empty audience":     `{` + base + `, "audiences": [""]}`,
		"require no claim":   `{` + base + `, "require_consumer": true}`,
		"optional+anonymous": `{` + base + `, "optional": true, "anonymous": "guest"}`,
		"unknown anonymous":  `{` + base + `, "anonymous": "nobody"}`,
		"bad source":         `{` + base + `, "from": [{"header": "X-Token", "query": "token"}]}`,
		"bad forward header": `{` + base + `, "forward_claims": {"X User": "sub"}}`,
		"missing ca":         `{` + base + `, "ca": "missing.pem"}`,
		"ca without PEM":     `{` + base + `, "ca": "not-a-ca.pem"}`,
	}
	for name, cfg := range tests {
		if _, err := policytest.Build(Kind, cfg, builder(&policytest.Pool{}, dir, nil)); err == nil {
			t.Errorf("%s: built %s", name, cfg)
		}
	}
	// Validation alone needs no secret in the environment (limen validate runs without them).
	k, _ := policy.Lookup(Kind)
	if err := k.Check([]byte(`{"url": "https://auth.test/introspect", "client_id": "gw", "client_secret_env": "LIMEN_TEST_NO_SUCH_VARIABLE"}`)); err != nil {
		t.Errorf("check: %v", err)
	}
	// The error names the variable, never a value.
	_, err := policytest.Build(Kind, tests["unset secret env"], builder(&policytest.Pool{}, dir, nil))
	if err == nil || !strings.Contains(err.Error(), "LIMEN_TEST_NO_SUCH_VARIABLE") {
		t.Errorf("unset variable: %v", err)
	}
	if p, err := policytest.Build(Kind, `{`+base+`}`, builder(&policytest.Pool{}, dir, nil)); err != nil {
		t.Errorf("valid config: %v", err)
	} else {
		_ = p.(*introspector).Close()
	}
}

// TestDocExamples builds every example of the reference page. Building never calls the
// server, so the examples' hosts are never contacted.
func TestDocExamples(t *testing.T) {
	t.Setenv("LIMEN_INTROSPECTION_SECRET", secret)
	t.Setenv("IDP_CLIENT_SECRET", secret)
	t.Setenv("SECRET", secret) // so the ${SECRET} example fails for its syntax, not its absence
	dir := t.TempDir()
	s := httptest.NewUnstartedServer(http.NotFoundHandler()) // only for a certificate
	s.StartTLS()
	s.Close()
	writeCA(t, s, filepath.Join(dir, "certs", "internal-ca.pem"))
	pool := &policytest.Pool{}
	policytest.CheckDocExamples(t, "../../docs/policies/oauth2_introspection.md", Kind, builder(pool, dir, nil))
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"active": true, "sub": "a", "scope": "x y", "exp": 1e12}`, `{"active": false}`, `{"active": "true"}`,
		`[]`, `null`, `{"active": true} {}`, `{"active": true, "scope": 7}`, ``, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := parse(body)
		if err != nil {
			return
		}
		if res.active != (res.claims != nil) {
			t.Fatalf("active %v with claims %v", res.active, res.claims)
		}
		if res.active && res.claims["active"] != true {
			t.Fatal("active answer whose claims do not say so")
		}
	})
}

// BenchmarkCachedHit is the hot path once a token is known: read the header, hash the token,
// find the answer, check it, set the principal, remove the token. The hash dominates.
func BenchmarkCachedHit(b *testing.B) {
	b.Setenv(secretEnv, secret)
	s := newAuthServer(b)
	tok := "2YotnFZFEjr1zCsicMWpAA-" + strings.Repeat("x", 40) // a typical opaque token
	s.set(tok, active(nil))
	p := newPolicy(b, s, `, "audiences": ["api"], "issuer": "`+issuer+`"`)
	h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	ex := &policy.Exchange{}
	r := httptest.NewRequest("GET", "/orders", nil)
	r = r.WithContext(policy.WithExchange(r.Context(), ex))
	val := []string{"Bearer " + tok}
	r.Header["Authorization"] = val
	if err := h.ServeHTTP(nil, r); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r.Header["Authorization"] = val
		ex.Principal = nil
		if err := h.ServeHTTP(nil, r); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := s.calls.Load(); n != 1 {
		b.Fatalf("%d calls, want 1", n)
	}
}
