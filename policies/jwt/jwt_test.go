package jwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/consumer"
	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

// signer is one signing key with its id.
type signer struct {
	kid    string
	alg    gojwt.SigningMethod
	key    crypto.Signer
	public crypto.PublicKey
}

func newRSA(t testing.TB, kid string) *signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, alg: gojwt.SigningMethodRS256, key: k, public: &k.PublicKey}
}

func newEC(t testing.TB, kid string) *signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, alg: gojwt.SigningMethodES256, key: k, public: &k.PublicKey}
}

func newEd(t testing.TB, kid string) *signer {
	pub, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, alg: gojwt.SigningMethodEdDSA, key: k, public: pub}
}

// sign makes a token; claims override the defaults, a nil value deletes a default.
func (s *signer) sign(t testing.TB, claims map[string]any, header map[string]any) string {
	t.Helper()
	now := time.Now()
	c := gojwt.MapClaims{"iss": issuer, "aud": "api", "sub": "user-1", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok := gojwt.NewWithClaims(s.alg, c)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	out, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const issuer = "https://issuer.test/"

// jwksServer is a real HTTPS JWK Set endpoint on 127.0.0.1 whose keys, availability and
// discovery document the test controls.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []*signer
	down    bool
	hits    atomic.Int32
	caFile  string
	issuer  string // discovery document's issuer
	jwksFor string // discovery's jwks_uri
}

func newJWKS(t *testing.T, keys ...*signer) *jwksServer {
	js := &jwksServer{keys: keys}
	js.Server = httptest.NewTLSServer(http.HandlerFunc(js.serve))
	t.Cleanup(js.Close)
	js.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: js.Certificate().Raw})
	if err := os.WriteFile(js.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	js.issuer, js.jwksFor = js.URL, js.URL+"/jwks.json"
	return js
}

func (js *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	js.hits.Add(1)
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": js.issuer, "jwks_uri": js.jwksFor})
	case "/jwks.json":
		set := jwkset.NewMemoryStorage()
		for _, k := range js.keys {
			jwk, err := jwkset.NewJWKFromKey(k.public, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid, USE: jwkset.UseSig}})
			if err != nil {
				panic(err)
			}
			_ = set.KeyWrite(r.Context(), jwk)
		}
		raw, _ := set.JSONPublic(r.Context())
		_, _ = w.Write(raw)
	case "/redirect":
		http.Redirect(w, r, "/jwks.json", http.StatusFound)
	case "/huge":
		// Valid JSON, 7 MB of it: only the body cap stops it.
		w.Write([]byte(`{"keys":[`))
		for range 100000 {
			w.Write([]byte(`{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},`))
		}
		w.Write([]byte(`{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}`))
	default:
		http.NotFound(w, r)
	}
}

func (js *jwksServer) set(keys ...*signer) { js.mu.Lock(); js.keys = keys; js.mu.Unlock() }
func (js *jwksServer) setDown(d bool)      { js.mu.Lock(); js.down = d; js.mu.Unlock() }

func testDir() *consumer.Directory {
	return consumer.New([]*config.Consumer{{Name: "acme", Groups: []string{"partners"}, Plan: "pro"}, {Name: "guest"}})
}

func builder(pool *policytest.Pool, dir string) func(*policy.BuildContext) {
	return func(bc *policy.BuildContext) {
		bc.Pool, bc.Consumers, bc.BaseDir = pool, testDir(), dir
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// idlePool hands out key sets that never fetch: for configs that name real-looking issuers
// (docs examples, configs expected to fail), so no test ever sends traffic off loopback.
type idlePool struct{}

func (idlePool) Acquire(string, func() (any, error)) (any, func(), error) {
	done := make(chan struct{})
	close(done)
	return &remoteKeys{cancel: func() {}, done: done}, func() {}, nil
}

func idle(dir string) func(*policy.BuildContext) {
	return func(bc *policy.BuildContext) { bc.Pool, bc.Consumers, bc.BaseDir = idlePool{}, testDir(), dir }
}

// buildFor makes a jwt policy against js and waits until its key set has loaded.
func buildFor(t *testing.T, js *jwksServer, extra string) policy.Policy {
	t.Helper()
	cfg := fmt.Sprintf(`{"issuer": %q, "audiences": ["api"], "algorithms": ["RS256", "ES256", "EdDSA"], "jwks_url": %q, "ca": %q %s}`,
		issuer, js.URL+"/jwks.json", js.caFile, extra)
	pool := &policytest.Pool{}
	p, err := policytest.Build(Kind, cfg, builder(pool, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.(*verifier).Close() })
	waitLoaded(t, p)
	return p
}

func waitLoaded(t *testing.T, p policy.Policy) {
	t.Helper()
	rk, ok := p.(*verifier).keys.(*remoteKeys)
	if !ok {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for rk.kf.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the key set never loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type outcome struct {
	status int
	code   string
	ex     *policy.Exchange
	res    policytest.Result
}

func call(p policy.Policy, token string, mutate ...func(*http.Request)) outcome {
	r := httptest.NewRequest("GET", "/", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for _, m := range mutate {
		m(r)
	}
	ex := &policy.Exchange{}
	res := policytest.Serve(p, r, ex, nil)
	o := outcome{ex: ex, res: res}
	if pe := policytest.PolicyError(res.Err); pe != nil {
		o.status, o.code = pe.Status, pe.Code
	}
	return o
}

func TestJWTAlgorithms(t *testing.T) {
	t.Parallel()
	rs, es, ed := newRSA(t, "rs"), newEC(t, "es"), newEd(t, "ed")
	js := newJWKS(t, rs, es, ed)
	p := buildFor(t, js, "")
	for _, s := range []*signer{rs, es, ed} {
		o := call(p, s.sign(t, map[string]any{"scope": "users:read users:write"}, nil))
		if o.status != 0 || o.ex.Principal == nil || o.ex.Principal.ID != "user-1" {
			t.Fatalf("%s: status %d %s, principal %+v", s.alg.Alg(), o.status, o.code, o.ex.Principal)
		}
		if got := strings.Join(o.ex.Principal.Scopes, " "); got != "users:read users:write" {
			t.Errorf("scopes %q", got)
		}
		if o.res.Seen.Header.Get("Authorization") != "" {
			t.Error("the token reached the upstream")
		}
	}
}

// TestJWTAttacks are the classic ways around a JWT check; every one must be 401.
func TestJWTAttacks(t *testing.T) {
	t.Parallel()
	rs := newRSA(t, "rs")
	js := newJWKS(t, rs)
	p := buildFor(t, js, "")
	attacker := newRSA(t, "rs") // same kid, another key
	evil := newJWKS(t, attacker)
	now := time.Now()

	pubDER, _ := x509.MarshalPKIXPublicKey(rs.public)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs := gojwt.NewWithClaims(gojwt.SigningMethodHS256, gojwt.MapClaims{"iss": issuer, "aud": "api", "sub": "x", "exp": now.Add(time.Hour).Unix()})
	hs.Header["kid"] = "rs"
	hsToken, _ := hs.SignedString(pubPEM) // key confusion: HMAC keyed with the RSA public key

	none := gojwt.NewWithClaims(gojwt.SigningMethodNone, gojwt.MapClaims{"iss": issuer, "aud": "api", "sub": "x", "exp": now.Add(time.Hour).Unix()})
	noneToken, _ := none.SignedString(gojwt.UnsafeAllowNoneSignatureType)

	valid := rs.sign(t, nil, nil)
	parts := strings.Split(valid, ".")

	tests := map[string]string{
		"alg none":                  noneToken,
		"alg none, empty signature": strings.TrimSuffix(noneToken, ".") + ".",
		"HS256 with the public key": hsToken,
		"expired":                   rs.sign(t, map[string]any{"exp": now.Add(-2 * time.Minute).Unix()}, nil),
		"no exp":                    rs.sign(t, map[string]any{"exp": nil}, nil),
		"not yet valid":             rs.sign(t, map[string]any{"nbf": now.Add(5 * time.Minute).Unix()}, nil),
		"issued in the future":      rs.sign(t, map[string]any{"iat": now.Add(5 * time.Minute).Unix()}, nil),
		"wrong audience":            rs.sign(t, map[string]any{"aud": "other-api"}, nil),
		"no audience":               rs.sign(t, map[string]any{"aud": nil}, nil),
		"wrong issuer":              rs.sign(t, map[string]any{"iss": "https://evil.test/"}, nil),
		"no issuer":                 rs.sign(t, map[string]any{"iss": nil}, nil),
		"kid path traversal":        rs.sign(t, nil, map[string]any{"kid": "../../../../etc/passwd"}),
		"kid SQL":                   rs.sign(t, nil, map[string]any{"kid": "x' OR '1'='1"}),
		"jku to the attacker":       attacker.sign(t, nil, map[string]any{"jku": evil.URL + "/jwks.json"}),
		"x5u to the attacker":       attacker.sign(t, nil, map[string]any{"x5u": evil.URL + "/cert.pem"}),
		"embedded jwk":              attacker.sign(t, nil, map[string]any{"jwk": map[string]any{"kty": "RSA"}}),
		"tampered payload":          parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2],
		"signature stripped":        parts[0] + "." + parts[1] + ".",
		"ID token":                  rs.sign(t, map[string]any{"nonce": "n-0S6_WzA2Mj"}, nil),
		"id typ":                    rs.sign(t, nil, map[string]any{"typ": "id+jwt"}),
		"oversized":                 rs.sign(t, map[string]any{"pad": strings.Repeat("x", 9000)}, nil),
		"garbage":                   "not.a.jwt",
		"empty bearer":              " ",
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := call(p, tok)
			if o.status != http.StatusUnauthorized || o.code != "token_invalid" || o.res.Reached {
				t.Fatalf("status %d %s (reached %v), want 401 token_invalid", o.status, o.code, o.res.Reached)
			}
		})
	}
	if n := evil.hits.Load(); n != 0 {
		t.Errorf("the attacker's key server was contacted %d times: jku/x5u must be ignored", n)
	}
	// The valid token still works after all that.
	if o := call(p, valid); o.status != 0 {
		t.Fatalf("valid token: %d %s", o.status, o.code)
	}
}

func TestJWTChallenges(t *testing.T) {
	t.Parallel()
	rs := newRSA(t, "rs")
	p := buildFor(t, newJWKS(t, rs), "")
	o := call(p, "")
	pe := policytest.PolicyError(o.res.Err)
	if o.status != 401 || o.code != "token_missing" || pe.Header.Get("Www-Authenticate") != `Bearer realm="limen"` {
		t.Fatalf("missing token: %d %s %v", o.status, o.code, pe.Header)
	}
	o = call(p, "abc")
	pe = policytest.PolicyError(o.res.Err)
	if pe.Header.Get("Www-Authenticate") != `Bearer realm="limen", error="invalid_token"` || strings.Contains(pe.Detail, "signature") {
		t.Fatalf("invalid token: %v %q", pe.Header, pe.Detail)
	}
}

// TestJWTKeyRotation: the issuer adds a key mid-test; a token with the new kid triggers one
// refetch and verifies. A retired key stops verifying once the set no longer has it.
func TestJWTKeyRotation(t *testing.T) {
	t.Parallel()
	old, next := newRSA(t, "2026-01"), newRSA(t, "2026-11")
	js := newJWKS(t, old)
	p := buildFor(t, js, "")
	if o := call(p, old.sign(t, nil, nil)); o.status != 0 {
		t.Fatalf("old key: %d", o.status)
	}
	js.set(next)
	if o := call(p, next.sign(t, nil, nil)); o.status != 0 {
		t.Fatalf("new key after rotation: %d %s", o.status, o.code)
	}
	if o := call(p, old.sign(t, nil, nil)); o.status != 401 {
		t.Fatalf("retired key still verifies: %d", o.status)
	}
	// A burst of unknown kids refetches at most once per minute: the endpoint is not hammered.
	before := js.hits.Load()
	for i := range 20 {
		call(p, newRSA(t, fmt.Sprintf("unknown-%d", i)).sign(t, nil, nil))
	}
	if n := js.hits.Load() - before; n > 1 {
		t.Errorf("20 unknown kids caused %d fetches, want at most 1", n)
	}
}

// TestJWTEndpointDown: once loaded, keys survive the endpoint going down; an endpoint down from
// the start gives 503 until it comes up, then tokens verify.
func TestJWTEndpointDown(t *testing.T) {
	t.Parallel()
	rs := newRSA(t, "rs")
	js := newJWKS(t, rs)
	p := buildFor(t, js, "")
	js.setDown(true)
	if o := call(p, rs.sign(t, nil, nil)); o.status != 0 {
		t.Fatalf("known key with the endpoint down: %d", o.status)
	}

	js2 := newJWKS(t, rs)
	js2.setDown(true)
	cfg := fmt.Sprintf(`{"issuer": %q, "audiences": ["api"], "algorithms": ["RS256"], "jwks_url": %q, "ca": %q}`, issuer, js2.URL+"/jwks.json", js2.caFile)
	p2 := policytest.MustBuild(t, Kind, cfg, builder(&policytest.Pool{}, t.TempDir()))
	defer p2.(*verifier).Close()
	o := call(p2, rs.sign(t, nil, nil))
	if o.status != http.StatusServiceUnavailable || o.code != "auth_unavailable" {
		t.Fatalf("endpoint down from the start: %d %s, want 503 auth_unavailable", o.status, o.code)
	}
	js2.setDown(false)
	waitLoaded(t, p2)
	if o := call(p2, rs.sign(t, nil, nil)); o.status != 0 {
		t.Fatalf("after the endpoint came up: %d %s", o.status, o.code)
	}
}

// TestJWTFetchHardening: no redirects, no clear text, bounded bodies.
func TestJWTFetchHardening(t *testing.T) {
	t.Parallel()
	rs := newRSA(t, "rs")
	js := newJWKS(t, rs)
	client, err := fetchClient(js.caFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/redirect", "/huge"} {
		_, err := (&remoteKeys{}).fetch(context.Background(), client, remoteOptions{issuer: issuer, jwksURL: js.URL + path, refresh: time.Hour, log: discardLogger()})
		if err == nil {
			t.Errorf("%s: loaded", path)
		}
	}
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer plain.Close()
	if _, err := (&remoteKeys{}).fetch(context.Background(), client, remoteOptions{issuer: issuer, jwksURL: plain.URL + "/jwks.json", refresh: time.Hour, log: discardLogger()}); err == nil {
		t.Error("fetched keys over http")
	}
}

func TestJWTDiscovery(t *testing.T) {
	t.Parallel()
	rs := newRSA(t, "rs")
	js := newJWKS(t, rs)
	cfg := fmt.Sprintf(`{"issuer": %q, "audiences": ["api"], "algorithms": ["RS256"], "discovery": true, "ca": %q}`, js.URL, js.caFile)
	p := policytest.MustBuild(t, Kind, cfg, builder(&policytest.Pool{}, t.TempDir()))
	defer p.(*verifier).Close()
	waitLoaded(t, p)
	if o := call(p, rs.sign(t, map[string]any{"iss": js.URL}, nil)); o.status != 0 {
		t.Fatalf("discovered keys: %d %s", o.status, o.code)
	}
	// A discovery document that speaks for another issuer is not trusted.
	js2 := newJWKS(t, rs)
	js2.issuer = "https://someone-else.test"
	cfg = fmt.Sprintf(`{"issuer": %q, "audiences": ["api"], "algorithms": ["RS256"], "discovery": true, "ca": %q}`, js2.URL, js2.caFile)
	p2 := policytest.MustBuild(t, Kind, cfg, builder(&policytest.Pool{}, t.TempDir()))
	defer p2.(*verifier).Close()
	if o := call(p2, rs.sign(t, map[string]any{"iss": js2.URL}, nil)); o.status != http.StatusServiceUnavailable {
		t.Fatalf("foreign discovery document: %d %s, want 503", o.status, o.code)
	}
}

func TestJWTLocalKeys(t *testing.T) {
	t.Parallel()
	rs, ed := newRSA(t, ""), newEd(t, "ed-1")
	dir := t.TempDir()
	der, _ := x509.MarshalPKIXPublicKey(rs.public)
	os.WriteFile(filepath.Join(dir, "rs.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	jwk, _ := jwkset.NewJWKFromKey(ed.public, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "ed-1"}})
	set := jwkset.NewMemoryStorage()
	_ = set.KeyWrite(context.Background(), jwk)
	raw, _ := set.JSONPublic(context.Background())
	os.WriteFile(filepath.Join(dir, "ed.json"), raw, 0o600)
	cfg := fmt.Sprintf(`{"issuer": %q, "audiences": ["api"], "algorithms": ["RS256", "EdDSA"], "keys": ["rs.pem", "ed.json"]}`, issuer)
	p := policytest.MustBuild(t, Kind, cfg, builder(&policytest.Pool{}, dir))
	for _, s := range []*signer{rs, ed} {
		if o := call(p, s.sign(t, nil, nil)); o.status != 0 {
			t.Errorf("%s: %d %s", s.alg.Alg(), o.status, o.code)
		}
	}
	if o := call(p, newRSA(t, "").sign(t, nil, nil)); o.status != 401 {
		t.Errorf("unknown key: %d", o.status)
	}
	// A private key does not belong in the gateway's config.
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	os.WriteFile(filepath.Join(dir, "priv.pem"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600)
	if _, err := policytest.Build(Kind, strings.Replace(cfg, `"ed.json"`, `"priv.pem"`, 1), builder(&policytest.Pool{}, dir)); err == nil {
		t.Error("a private key was accepted")
	}
}

func TestJWTConsumersAndClaims(t *testing.T) {
	t.Parallel()
	rs := newRSA(t, "rs")
	p := buildFor(t, newJWKS(t, rs), `, "consumer_claim": "client_id", "forward_claims": {"X-User-Email": "email", "X-Tenant": "org.id"},
		"required_claims": {"email_verified": ["true"]}, "authorized_parties": ["web"]`)
	tok := rs.sign(t, map[string]any{"client_id": "acme", "email": "a@acme.test", "email_verified": true, "azp": "web", "org": map[string]any{"id": "o-7"}}, nil)
	o := call(p, tok, func(r *http.Request) {
		r.Header.Set("X-User-Email", "spoof@evil.test")
		r.Header.Set("Connection", "X-Tenant")
	})
	if o.status != 0 {
		t.Fatalf("%d %s", o.status, o.code)
	}
	if pr := o.ex.Principal; pr.ID != "acme" || pr.Plan != "pro" || pr.Consumer == nil {
		t.Errorf("principal %+v", pr)
	}
	seen := o.res.Seen.Header
	if seen.Get("X-User-Email") != "a@acme.test" || seen.Get("X-Tenant") != "o-7" || strings.Contains(seen.Get("Connection"), "X-Tenant") {
		t.Errorf("forwarded claims: %v", seen)
	}
	// A spoofed claim header goes even when this policy does not authenticate the request.
	o = call(p, "", func(r *http.Request) { r.Header.Set("X-User-Email", "spoof@evil.test") })
	if o.res.Reached || o.status != 401 {
		t.Fatalf("no token: %d", o.status)
	}
	for name, claims := range map[string]map[string]any{
		"unverified email": {"email_verified": false, "azp": "web"},
		"wrong azp":        {"email_verified": true, "azp": "cli"},
	} {
		if o := call(p, rs.sign(t, claims, nil)); o.status != 401 {
			t.Errorf("%s: %d", name, o.status)
		}
	}
}

func TestJWTSharesKeySetAcrossInstances(t *testing.T) {
	t.Parallel()
	rs := newRSA(t, "rs")
	js := newJWKS(t, rs)
	pool := &policytest.Pool{}
	cfg := fmt.Sprintf(`{"issuer": %q, "audiences": ["api"], "algorithms": ["RS256"], "jwks_url": %q, "ca": %q}`, issuer, js.URL+"/jwks.json", js.caFile)
	a := policytest.MustBuild(t, Kind, cfg, builder(pool, ""))
	b := policytest.MustBuild(t, Kind, cfg, builder(pool, ""))
	if pool.Len() != 1 || a.(*verifier).keys != b.(*verifier).keys {
		t.Fatalf("two routes with the same JWKS URL hold %d key sets", pool.Len())
	}
	a.(*verifier).Close()
	b.(*verifier).Close()
	if pool.Len() != 0 {
		t.Error("the key set outlived its last user")
	}
}

func TestJWTConfigErrors(t *testing.T) {
	t.Parallel()
	base := `"issuer": "https://i.test/", "audiences": ["api"], "jwks_url": "https://i.test/jwks"`
	for _, bad := range []string{
		`{` + base + `}`, // no algorithms
		`{` + base + `, "algorithms": ["none"]}`,
		`{` + base + `, "algorithms": ["HS256"]}`,
		`{` + base + `, "algorithms": ["RS257"]}`,
		`{"issuer": "https://i.test/", "algorithms": ["RS256"], "jwks_url": "https://i.test/jwks"}`, // no audience
		`{"audiences": ["api"], "algorithms": ["RS256"], "jwks_url": "https://i.test/jwks"}`,        // no issuer
		`{"issuer": "https://i.test/", "audiences": ["api"], "algorithms": ["RS256"], "jwks_url": "http://i.test/jwks"}`,
		`{"issuer": "https://i.test/", "audiences": ["api"], "algorithms": ["RS256"]}`, // no key source
		`{` + base + `, "algorithms": ["RS256"], "keys": ["k.pem"]}`,                   // two sources
		`{` + base + `, "algorithms": ["RS256"], "leeway": "1h"}`,
		`{` + base + `, "algorithms": ["RS256"], "require_consumer": true}`,
		`{` + base + `, "algorithms": ["RS256"], "audiance": ["x"]}`,
	} {
		if _, err := policytest.Build(Kind, bad, idle("")); err == nil {
			t.Errorf("%s: built", bad)
		}
	}
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/jwt.md", Kind, idle("testdata"))
}

// BenchmarkVerify compares the policy's verification with golang-jwt's alone on the same token
// and key, per algorithm. The budget is the policy within 10% of the bare parse.
func BenchmarkVerify(b *testing.B) {
	for _, mk := range []func(testing.TB, string) *signer{newRSA, newEC, newEd} {
		s := mk(b, "k")
		dir := b.TempDir()
		der, _ := x509.MarshalPKIXPublicKey(s.public)
		os.WriteFile(filepath.Join(dir, "k.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
		tok := s.sign(b, nil, nil)
		b.Run(s.alg.Alg()+"/golang-jwt", func(b *testing.B) {
			parser := gojwt.NewParser(gojwt.WithValidMethods([]string{s.alg.Alg()}), gojwt.WithExpirationRequired(),
				gojwt.WithIssuer(issuer), gojwt.WithAudience("api"))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parser.ParseWithClaims(tok, gojwt.MapClaims{}, func(*gojwt.Token) (any, error) { return s.public, nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.alg.Alg()+"/policy", func(b *testing.B) { benchPolicy(b, s, tok, dir, "") })
		b.Run(s.alg.Alg()+"/policy-cached", func(b *testing.B) { benchPolicy(b, s, tok, dir, `, "cache_size": 1000`) })
	}
}

// benchPolicy runs the policy on tok, a token s signed, with the key in dir.
func benchPolicy(b *testing.B, s *signer, tok, dir, extra string) {
	cfg := fmt.Sprintf(`{"issuer": %q, "audiences": ["api"], "algorithms": [%q], "keys": ["k.pem"] %s}`, issuer, s.alg.Alg(), extra)
	p := policytest.MustBuild(b, Kind, cfg, builder(&policytest.Pool{}, dir))
	h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	r := httptest.NewRequest("GET", "/", nil)
	ex := &policy.Exchange{}
	r = r.WithContext(policy.WithExchange(r.Context(), ex))
	val := []string{"Bearer " + tok}
	b.ReportAllocs()
	for b.Loop() {
		r.Header["Authorization"] = val
		ex.Principal = nil
		if err := h.ServeHTTP(nil, r); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzVerify feeds arbitrary tokens to the verifier: it must never panic, and anything it
// accepts must carry the issuer, an audience and an expiry (only the seed signed by the test key
// can).
func FuzzVerify(f *testing.F) {
	s := newEd(f, "")
	dir := f.TempDir()
	der, _ := x509.MarshalPKIXPublicKey(s.public)
	os.WriteFile(filepath.Join(dir, "k.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	cfg := fmt.Sprintf(`{"issuer": %q, "audiences": ["api"], "algorithms": ["EdDSA"], "keys": ["k.pem"]}`, issuer)
	p := policytest.MustBuild(f, Kind, cfg, builder(&policytest.Pool{}, dir)).(*verifier)
	valid := s.sign(f, nil, nil)
	f.Add(valid)
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := p.verify(context.Background(), token)
		if err != nil {
			return
		}
		if claims["iss"] != issuer || claims["exp"] == nil || claims["aud"] == nil {
			t.Fatalf("accepted a token without the required claims: %v", claims)
		}
	})
}

// TestJWTVerifiedTokenCache: with cache_size, a token is verified once and served from the
// cache until its exp (or cache_ttl); a different token is verified on its own.
func TestJWTVerifiedTokenCache(t *testing.T) {
	t.Parallel()
	s := newEd(t, "")
	dir := t.TempDir()
	der, _ := x509.MarshalPKIXPublicKey(s.public)
	os.WriteFile(filepath.Join(dir, "k.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	cfg := fmt.Sprintf(`{"issuer": %q, "audiences": ["api"], "algorithms": ["EdDSA"], "keys": ["k.pem"], "cache_size": 2, "forward_claims": {"X-Sub": "sub"}}`, issuer)
	p := policytest.MustBuild(t, Kind, cfg, builder(&policytest.Pool{}, dir)).(*verifier)
	clock := time.Now()
	p.now = func() time.Time { return clock }
	tok := s.sign(t, map[string]any{"exp": time.Now().Add(time.Minute).Unix()}, nil)
	for range 3 {
		o := call(p, tok)
		if o.status != 0 || o.res.Seen.Header.Get("X-Sub") != "user-1" || o.res.Seen.Header.Get("Authorization") != "" {
			t.Fatalf("cached path: %d, headers %v", o.status, o.res.Seen.Header)
		}
	}
	if n := p.verified.Load(); n != 1 {
		t.Fatalf("3 requests with one token verified it %d times, want 1", n)
	}
	clock = clock.Add(2 * time.Minute) // past the token's exp: the entry is stale
	call(p, tok)
	if n := p.verified.Load(); n != 2 {
		t.Fatalf("a token past its exp was served from the cache (%d verifications)", n)
	}
	for i := range 5 { // bounded
		call(p, s.sign(t, map[string]any{"sub": fmt.Sprintf("u%d", i)}, nil))
	}
	if len(p.cache) > 2 {
		t.Fatalf("cache holds %d tokens, bound 2", len(p.cache))
	}
	// A bad token is never cached.
	for range 2 {
		if o := call(p, tok+"x"); o.status != 401 {
			t.Fatalf("tampered token: %d", o.status)
		}
	}
}
