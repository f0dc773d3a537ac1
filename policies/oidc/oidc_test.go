package oidc

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/consumer"
	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

const (
	clientID    = "web app"       // a space, so client_secret_basic's form-encoding matters
	secret      = "s3cr3t&/+=%:é" // likewise
	secretEnv   = "LIMEN_TEST_OIDC_SECRET"
	keyEnv      = "LIMEN_TEST_OIDC_KEY"
	shortKeyEnv = "LIMEN_TEST_OIDC_SHORT_KEY"
	unsetEnv    = "LIMEN_TEST_OIDC_UNSET"
	redirectURL = "https://app.test/oauth2/callback"
)

// sessionKey is the session key the tests set, as hex.
var sessionKey = strings.Repeat("5a", 32)

func TestMain(m *testing.M) {
	// Set once here rather than with t.Setenv, which parallel tests cannot use.
	for k, v := range map[string]string{
		secretEnv: secret, keyEnv: sessionKey, shortKeyEnv: strings.Repeat("ab", 16),
		"OIDC_CLIENT_SECRET": secret, "OIDC_SESSION_KEY": base64.StdEncoding.EncodeToString(make([]byte, 32)),
	} {
		os.Setenv(k, v)
	}
	os.Unsetenv(unsetEnv)
	goleak.VerifyTestMain(m)
}

var (
	signingKeyOnce sync.Once
	signingKey     *rsa.PrivateKey
)

func rsaKey(t testing.TB) *rsa.PrivateKey {
	signingKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		signingKey = k
	})
	return signingKey
}

// idp is a minimal OpenID Connect provider on a real TLS loopback server: discovery, keys, an
// authorization endpoint that logs anybody in at once, a token endpoint that checks the client,
// the code, PKCE and the redirect URI, and refresh tokens that rotate.
type idp struct {
	*httptest.Server
	key    *rsa.PrivateKey
	caFile string
	client *http.Client // the browser's, towards the provider; stops at redirects

	mu             sync.Mutex
	codes          map[string]grant
	refreshTokens  map[string]bool
	down           bool
	endSession     bool
	noRefresh      bool
	refreshFails   bool
	refreshIDToken bool
	email          string
	idHook         func(claims gojwt.MapClaims) // edits the ID token issued for a code
	refreshes      int
}

type grant struct{ challenge, nonce, redirect, scope string }

func newIDP(t *testing.T) *idp {
	ip := &idp{key: rsaKey(t), codes: map[string]grant{}, refreshTokens: map[string]bool{}, endSession: true, email: "ann@example.com"}
	ip.Server = httptest.NewUnstartedServer(http.HandlerFunc(ip.serve))
	ip.StartTLS()
	t.Cleanup(ip.Close)
	ip.caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ip.Certificate().Raw})
	if err := os.WriteFile(ip.caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	ip.client = ip.Client()
	ip.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return ip
}

func (ip *idp) set(f func(ip *idp)) { ip.mu.Lock(); f(ip); ip.mu.Unlock() }

func (ip *idp) serve(w http.ResponseWriter, r *http.Request) {
	ip.mu.Lock()
	defer ip.mu.Unlock()
	if ip.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		doc := map[string]any{
			"issuer": ip.URL, "authorization_endpoint": ip.URL + "/authorize", "token_endpoint": ip.URL + "/token",
			"jwks_uri": ip.URL + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		}
		if ip.endSession {
			doc["end_session_endpoint"] = ip.URL + "/logout"
		}
		writeJSON(w, http.StatusOK, doc)
	case "/jwks":
		pub := ip.key.PublicKey
		writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		}}})
	case "/authorize":
		q := r.URL.Query()
		if q.Get("response_type") != "code" || q.Get("client_id") != clientID || q.Get("code_challenge_method") != "S256" ||
			q.Get("code_challenge") == "" || q.Get("state") == "" || q.Get("nonce") == "" || q.Get("redirect_uri") != redirectURL ||
			!strings.Contains(" "+q.Get("scope")+" ", " openid ") {
			http.Error(w, "bad authorization request: "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		code := rand.Text()
		ip.codes[code] = grant{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), redirect: q.Get("redirect_uri"), scope: q.Get("scope")}
		back := url.Values{"code": {code}, "state": {q.Get("state")}, "iss": {ip.URL}}
		http.Redirect(w, r, q.Get("redirect_uri")+"?"+back.Encode(), http.StatusFound)
	case "/token":
		ip.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (ip *idp) token(w http.ResponseWriter, r *http.Request) {
	id, sec, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		sec, _ = url.QueryUnescape(sec)
	}
	if !ok || id != clientID || sec != secret || r.Method != http.MethodPost {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	now := time.Now()
	claims := gojwt.MapClaims{"iss": ip.URL, "aud": clientID, "sub": "user-1", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(),
		"email": ip.email, "groups": []string{"admins", "staff"}, "tenant": map[string]any{"id": "t-9"}}
	resp := map[string]any{"access_token": rand.Text(), "token_type": "Bearer", "expires_in": 300}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		g, found := ip.codes[r.PostForm.Get("code")]
		delete(ip.codes, r.PostForm.Get("code")) // codes are single-use
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !found || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge || r.PostForm.Get("redirect_uri") != g.redirect {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		claims["nonce"] = g.nonce
		if ip.idHook != nil {
			ip.idHook(claims)
		}
		resp["id_token"] = ip.sign(claims)
	case "refresh_token":
		ip.refreshes++
		rt := r.PostForm.Get("refresh_token")
		if ip.refreshFails || !ip.refreshTokens[rt] {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
			return
		}
		delete(ip.refreshTokens, rt) // rotation: each refresh token works once
		if ip.refreshIDToken {
			resp["id_token"] = ip.sign(claims)
		}
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	if !ip.noRefresh {
		rt := "rt-" + rand.Text()
		ip.refreshTokens[rt] = true
		resp["refresh_token"] = rt
	}
	writeJSON(w, http.StatusOK, resp)
}

func (ip *idp) sign(claims gojwt.MapClaims) string {
	tok := gojwt.NewWithClaims(gojwt.SigningMethodRS256, claims)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(ip.key)
	if err != nil {
		panic(err)
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func testDir() *consumer.Directory {
	return consumer.New([]*config.Consumer{{Name: "acme-admins", Groups: []string{"staff"}, Plan: "pro"}})
}

// buildFor builds an oidc policy against ip; extra adds config members.
func buildFor(t *testing.T, ip *idp, extra string) *login {
	t.Helper()
	return buildWith(t, ip, &policytest.Pool{}, extra)
}

func buildWith(t *testing.T, ip *idp, pool *policytest.Pool, extra string) *login {
	t.Helper()
	cfg := fmt.Sprintf(`{"issuer": %q, "client_id": %q, "client_secret_env": %q, "session_key_env": %q, "redirect_url": %q, "ca": %q,
		"post_logout_redirect_url": "https://app.test/bye" %s}`, ip.URL, clientID, secretEnv, keyEnv, redirectURL, filepath.Base(ip.caFile), extra)
	p := policytest.MustBuild(t, Kind, cfg, func(bc *policy.BuildContext) {
		bc.Pool, bc.Consumers, bc.BaseDir = pool, testDir(), filepath.Dir(ip.caFile)
	})
	t.Cleanup(func() { _ = p.(*login).Close() })
	return p.(*login)
}

// browser carries cookies between requests the way a browser does, and follows the provider's
// side of the login over real HTTPS.
type browser struct {
	t   *testing.T
	ip  *idp
	p   policy.Policy
	jar *cookiejar.Jar
}

func newBrowser(t *testing.T, ip *idp, p policy.Policy) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, ip: ip, p: p, jar: jar}
}

// page is a page navigation to target (a path or an absolute https://app.test URL).
func page(target string) *http.Request {
	if strings.HasPrefix(target, "/") {
		target = "https://app.test" + target
	}
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	return r
}

type step struct {
	policytest.Result
	ex *policy.Exchange
}

func (b *browser) do(r *http.Request) step {
	for _, c := range b.jar.Cookies(r.URL) {
		r.AddCookie(c)
	}
	ex := &policy.Exchange{}
	res := policytest.Serve(b.p, r, ex, nil)
	b.jar.SetCookies(r.URL, res.Rec.Result().Cookies())
	return step{res, ex}
}

func (b *browser) get(target string) step { return b.do(page(target)) }

// authorize visits the provider's authorization URL and returns where it sends the browser back.
func (b *browser) authorize(location string) string {
	b.t.Helper()
	resp, err := b.ip.client.Get(location)
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		b.t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// startLogin requests target without a session and returns the callback URL the provider sends
// the browser back to.
func (b *browser) startLogin(target string) string {
	b.t.Helper()
	res := b.get(target)
	if res.Err != nil || res.Rec.Code != http.StatusFound {
		b.t.Fatalf("GET %s without a session: status %d, err %v", target, res.Rec.Code, res.Err)
	}
	loc := res.Rec.Header().Get("Location")
	if !strings.HasPrefix(loc, b.ip.URL+"/authorize?") {
		b.t.Fatalf("redirect to %q, want the provider's authorization endpoint", loc)
	}
	return b.authorize(loc)
}

// login runs the whole login for target and returns the callback's answer.
func (b *browser) login(target string) step {
	b.t.Helper()
	res := b.get(b.startLogin(target))
	if res.Err != nil || res.Rec.Code != http.StatusFound {
		b.t.Fatalf("callback: status %d, err %v", res.Rec.Code, res.Err)
	}
	return res
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse("https://app.test/oauth2/callback")
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (b *browser) setSessionCookie(value string) {
	u, _ := url.Parse("https://app.test/")
	b.jar.SetCookies(u, []*http.Cookie{{Name: "limen_session", Value: value, Path: "/", Secure: true, HttpOnly: true}})
}

func wantError(t *testing.T, res step, status int, code string) {
	t.Helper()
	pe := policytest.PolicyError(res.Err)
	if pe == nil || pe.Status != status || pe.Code != code {
		t.Fatalf("got %v (status %d), want %d %s", res.Err, res.Rec.Code, status, code)
	}
	if res.Reached {
		t.Fatal("the request reached the upstream")
	}
	if loc := res.Rec.Header().Get("Location"); loc != "" {
		t.Fatalf("an error answer redirects to %q", loc)
	}
}

// testSealer opens and forges session cookies with the key the tests configure.
func testSealer(t *testing.T, ip *idp) *sealer {
	key, _ := hex.DecodeString(sessionKey)
	s, err := newSealer(key, ip.URL, clientID, "limen_session")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoginFlow(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	p := buildFor(t, ip, `, "forward_claims": {"X-User-Email": "email", "X-Groups": "groups", "X-Tenant": "tenant.id"}`)
	b := newBrowser(t, ip, p)

	res := b.get("/app/page?x=1&y=%2F")
	if res.Rec.Code != http.StatusFound || res.Reached {
		t.Fatalf("no session: status %d, reached %v", res.Rec.Code, res.Reached)
	}
	loc, _ := url.Parse(res.Rec.Header().Get("Location"))
	q := loc.Query()
	for k, want := range map[string]string{"response_type": "code", "client_id": clientID, "redirect_uri": redirectURL,
		"code_challenge_method": "S256", "scope": "openid profile email"} {
		if q.Get(k) != want {
			t.Errorf("authorization request %s = %q, want %q", k, q.Get(k), want)
		}
	}
	if len(q.Get("state")) < 40 || len(q.Get("nonce")) < 40 || len(q.Get("code_challenge")) < 40 {
		t.Errorf("state, nonce and code challenge must be long random values: %v", q)
	}
	flowCookie := res.Rec.Result().Cookies()[0]
	if flowCookie.Name != "limen_session_flow" || !flowCookie.HttpOnly || !flowCookie.Secure || flowCookie.SameSite != http.SameSiteLaxMode ||
		flowCookie.Path != "/oauth2/callback" || flowCookie.MaxAge != 600 {
		t.Errorf("flow cookie %+v", flowCookie)
	}
	if cc := res.Rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}

	res = b.get(b.authorize(loc.String()))
	if res.Rec.Code != http.StatusFound || res.Rec.Header().Get("Location") != "/app/page?x=1&y=%2F" {
		t.Fatalf("callback: status %d, Location %q, err %v", res.Rec.Code, res.Rec.Header().Get("Location"), res.Err)
	}
	if b.cookie("limen_session_flow") != nil {
		t.Error("the flow cookie outlives the callback")
	}
	var sc *http.Cookie
	for _, c := range res.Rec.Result().Cookies() {
		if c.Name == "limen_session" {
			sc = c
		}
	}
	if sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/" || sc.MaxAge <= 0 || sc.MaxAge > 8*3600 {
		t.Fatalf("session cookie %+v", sc)
	}

	r := page("/app/page?x=1")
	r.AddCookie(&http.Cookie{Name: "theme", Value: "dark"})
	r.Header.Set("X-User-Email", "mallory@example.com")
	r.Header.Set("Connection", "X-Tenant")
	res = b.do(r)
	if res.Err != nil || !res.Reached {
		t.Fatalf("with a session: err %v, status %d", res.Err, res.Rec.Code)
	}
	pr := res.ex.Principal
	if pr == nil || pr.ID != "user-1" || pr.Method != "oidc" || pr.Claims["email"] != "ann@example.com" || pr.Claims["sub"] != "user-1" {
		t.Fatalf("principal %+v", pr)
	}
	h := res.Seen.Header
	if h.Get("X-User-Email") != "ann@example.com" || h.Get("X-Groups") != "admins,staff" || h.Get("X-Tenant") != "t-9" {
		t.Errorf("forwarded claims: %v", h)
	}
	if h.Get("Connection") != "" {
		t.Errorf("Connection %q could delete a forwarded claim", h.Get("Connection"))
	}
	if cookies := h.Get("Cookie"); cookies != "theme=dark" {
		t.Errorf("upstream Cookie %q, want the session stripped and other cookies kept", cookies)
	}
}

func TestConsumerClaim(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	ip.set(func(ip *idp) { ip.idHook = func(c gojwt.MapClaims) { c["team"] = "acme-admins" } })
	b := newBrowser(t, ip, buildFor(t, ip, `, "consumer_claim": "team"`))
	b.login("/")
	res := b.get("/")
	if pr := res.ex.Principal; pr == nil || pr.ID != "acme-admins" || pr.Consumer == nil || pr.Plan != "pro" {
		t.Fatalf("principal %+v", pr)
	}
}

func TestCallbackAttacks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		hook func(gojwt.MapClaims)
		edit func(cb *url.URL) // changes the callback URL
	}{
		{name: "state mismatch", edit: func(cb *url.URL) {
			q := cb.Query()
			q.Set("state", "attacker-state")
			cb.RawQuery = q.Encode()
		}},
		{name: "no state", edit: func(cb *url.URL) {
			q := cb.Query()
			q.Del("state")
			cb.RawQuery = q.Encode()
		}},
		{name: "provider error", edit: func(cb *url.URL) {
			q := cb.Query()
			q.Del("code")
			q.Set("error", "access_denied")
			cb.RawQuery = q.Encode()
		}},
		{name: "another issuer named (RFC 9207)", edit: func(cb *url.URL) {
			q := cb.Query()
			q.Set("iss", "https://evil.example")
			cb.RawQuery = q.Encode()
		}},
		{name: "unknown code", edit: func(cb *url.URL) {
			q := cb.Query()
			q.Set("code", "forged")
			cb.RawQuery = q.Encode()
		}},
		{name: "nonce mismatch", hook: func(c gojwt.MapClaims) { c["nonce"] = "other-nonce" }},
		{name: "no nonce", hook: func(c gojwt.MapClaims) { delete(c, "nonce") }},
		{name: "another audience", hook: func(c gojwt.MapClaims) { c["aud"] = "other-client" }},
		{name: "wrong issuer", hook: func(c gojwt.MapClaims) { c["iss"] = "https://evil.example" }},
		{name: "expired", hook: func(c gojwt.MapClaims) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		}},
		{name: "no subject", hook: func(c gojwt.MapClaims) { delete(c, "sub") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ip := newIDP(t)
			if tc.hook != nil {
				ip.set(func(ip *idp) { ip.idHook = tc.hook })
			}
			b := newBrowser(t, ip, buildFor(t, ip, ""))
			cb, _ := url.Parse(b.startLogin("/app"))
			if tc.edit != nil {
				tc.edit(cb)
			}
			res := b.get(cb.String())
			wantError(t, res, http.StatusUnauthorized, "login_failed")
			if b.cookie("limen_session") != nil {
				t.Error("a failed callback set a session")
			}
			if b.cookie("limen_session_flow") != nil {
				t.Error("a failed callback kept the flow cookie")
			}
		})
	}
}

func TestCallbackWithoutFlowCookie(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	p := buildFor(t, ip, "")
	cb := newBrowser(t, ip, p).startLogin("/app")
	// Another browser (the victim of login CSRF) arrives at the callback with the attacker's code.
	wantError(t, newBrowser(t, ip, p).get(cb), http.StatusUnauthorized, "login_failed")
}

func TestReplayedCode(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	b := newBrowser(t, ip, buildFor(t, ip, ""))
	cb := b.startLogin("/app")
	flow := b.cookie("limen_session_flow")
	if res := b.get(cb); res.Rec.Code != http.StatusFound {
		t.Fatalf("first callback: %d %v", res.Rec.Code, res.Err)
	}
	// The attacker captured the callback URL and the flow cookie and replays both.
	r := page(cb)
	r.AddCookie(flow)
	res := policytest.Serve(b.p, r, nil, nil)
	wantError(t, step{res, nil}, http.StatusUnauthorized, "login_failed")
}

func TestCallbackMethod(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	p := buildFor(t, ip, "")
	res := policytest.Serve(p, httptest.NewRequest(http.MethodPost, redirectURL, nil), nil, nil)
	if pe := policytest.PolicyError(res.Err); pe == nil || pe.Status != http.StatusMethodNotAllowed {
		t.Fatalf("POST to the callback: %v", res.Err)
	}
}

func TestTamperedSession(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	b := newBrowser(t, ip, buildFor(t, ip, ""))
	b.login("/")
	good := b.cookie("limen_session").Value
	other := testSealer(t, ip)
	otherFlow, _ := other.seal(other.flowAD, &session{Sub: "admin", End: time.Now().Add(time.Hour).Unix(), Fresh: time.Now().Add(time.Hour).Unix()})
	wrongKey, _ := newSealer(make([]byte, 32), ip.URL, clientID, "limen_session")
	forged, _ := wrongKey.seal(wrongKey.sessionAD, &session{Sub: "admin", End: time.Now().Add(time.Hour).Unix(), Fresh: time.Now().Add(time.Hour).Unix()})
	flip := []byte(good)
	flip[len(flip)/2] ^= 1
	for name, value := range map[string]string{
		"bit flipped":             string(flip),
		"truncated":               good[:len(good)-4],
		"not base64":              "!!!" + good,
		"empty":                   "",
		"flow payload as session": otherFlow,
		"sealed with another key": forged,
		"far too large":           strings.Repeat("A", 9000),
		"plain JSON":              base64.RawURLEncoding.EncodeToString([]byte(`{"s":"admin","e":9999999999,"f":9999999999}`)),
		"sealed for another issuer": func() string {
			s, _ := newSealer(mustHex(sessionKey), "https://other.example", clientID, "limen_session")
			v, _ := s.seal(s.sessionAD, &session{Sub: "admin", End: time.Now().Add(time.Hour).Unix(), Fresh: time.Now().Add(time.Hour).Unix()})
			return v
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			b.setSessionCookie(value)
			res := b.get("/private")
			if res.Reached || res.Rec.Code != http.StatusFound || !strings.HasPrefix(res.Rec.Header().Get("Location"), ip.URL+"/authorize") {
				t.Fatalf("tampered session: reached %v, status %d, err %v", res.Reached, res.Rec.Code, res.Err)
			}
		})
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestOpenRedirect(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	p := buildFor(t, ip, "")
	// A backslash is escaped on the way, so the browser reads it as a path character.
	for path, want := range map[string]string{"//evil.example": "/", "//evil.example/x": "/", "/\\evil.example": "/%5Cevil.example?y=1"} {
		b := newBrowser(t, ip, p)
		r := page("/?y=1")
		r.URL.Path, r.URL.RawPath = path, ""
		res := b.do(r)
		if res.Rec.Code != http.StatusFound {
			t.Fatalf("%s: %d %v", path, res.Rec.Code, res.Err)
		}
		res = b.get(b.authorize(res.Rec.Header().Get("Location")))
		if loc := res.Rec.Header().Get("Location"); loc != want {
			t.Errorf("after login from %q the browser goes to %q, want %q", path, loc, want)
		}
	}
}

func TestLocalURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/a/b?c=d": "/a/b?c=d", "/": "/", "": "/", "//evil.example": "/", "/\\evil.example": "/",
		"https://evil.example/": "/", "evil.example": "/", "/a\r\nSet-Cookie: x=y": "/", "/a/\\b": "/",
		"/" + strings.Repeat("a", 3000): "/",
	} {
		if got := localURL(in); got != want {
			t.Errorf("localURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNonNavigationGets401(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	p := buildFor(t, ip, "")
	api := buildFor(t, ip, `, "api_mode": true`)
	cases := []struct {
		name string
		p    policy.Policy
		req  func() *http.Request
	}{
		{"api mode", api, func() *http.Request { return page("/app") }},
		{"json accept", p, func() *http.Request {
			r := page("/app")
			r.Header.Set("Accept", "application/json")
			return r
		}},
		{"curl accept", p, func() *http.Request {
			r := page("/app")
			r.Header.Set("Accept", "*/*")
			return r
		}},
		{"POST", p, func() *http.Request {
			r := page("/app")
			r.Method = http.MethodPost
			return r
		}},
		{"XHR", p, func() *http.Request {
			r := page("/app")
			r.Header.Set("X-Requested-With", "XMLHttpRequest")
			return r
		}},
		{"fetch", p, func() *http.Request {
			r := page("/app")
			r.Header.Set("Sec-Fetch-Mode", "cors")
			return r
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := policytest.Serve(tc.p, tc.req(), nil, nil)
			wantError(t, step{res, nil}, http.StatusUnauthorized, "session_required")
			pe := policytest.PolicyError(res.Err)
			if !strings.HasPrefix(pe.Header.Get("Www-Authenticate"), "Cookie ") {
				t.Errorf("challenge %q", pe.Header.Get("Www-Authenticate"))
			}
			if len(res.Rec.Result().Cookies()) != 0 {
				t.Error("a 401 started a login flow")
			}
		})
	}
	// A navigation without Accept (some clients send none) is redirected.
	r := httptest.NewRequest(http.MethodGet, "https://app.test/app", nil)
	if res := policytest.Serve(p, r, nil, nil); res.Rec.Code != http.StatusFound {
		t.Errorf("GET without Accept: %d %v", res.Rec.Code, res.Err)
	}
}

// rewriteSession changes the browser's session cookie as only the key holder could.
func rewriteSession(t *testing.T, b *browser, edit func(*session)) {
	t.Helper()
	s := testSealer(t, b.ip)
	var ss session
	if err := s.open(s.sessionAD, b.cookie("limen_session").Value, &ss); err != nil {
		t.Fatal(err)
	}
	edit(&ss)
	v, err := s.seal(s.sessionAD, &ss)
	if err != nil {
		t.Fatal(err)
	}
	b.setSessionCookie(v)
}

func readSession(t *testing.T, b *browser) session {
	t.Helper()
	s := testSealer(t, b.ip)
	var ss session
	if err := s.open(s.sessionAD, b.cookie("limen_session").Value, &ss); err != nil {
		t.Fatal(err)
	}
	return ss
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	b := newBrowser(t, ip, buildFor(t, ip, `, "forward_claims": {"X-User-Email": "email"}`))
	b.login("/")
	before := readSession(t, b)
	if before.Refresh == "" || before.AccessExp == 0 || before.IDToken == "" {
		t.Fatalf("session after login: %+v", before)
	}

	// The access token expired: the session is refreshed and the cookie re-issued.
	ip.set(func(ip *idp) { ip.refreshIDToken, ip.email = true, "ann@new.example" })
	rewriteSession(t, b, func(s *session) { s.AccessExp = time.Now().Add(-time.Minute).Unix() })
	res := b.get("/")
	if !res.Reached || res.Err != nil {
		t.Fatalf("refresh: reached %v, err %v", res.Reached, res.Err)
	}
	if got := res.Seen.Header.Get("X-User-Email"); got != "ann@new.example" {
		t.Errorf("claims after refresh: X-User-Email %q", got)
	}
	after := readSession(t, b)
	if after.Refresh == before.Refresh || after.AccessExp <= time.Now().Unix() || after.End != before.End {
		t.Errorf("session after refresh: %+v (before %+v)", after, before)
	}

	// Without a new ID token, the stale ID token's time is extended to the access token's.
	ip.set(func(ip *idp) { ip.refreshIDToken = false })
	rewriteSession(t, b, func(s *session) { s.Fresh = time.Now().Add(-time.Minute).Unix() })
	if res := b.get("/"); !res.Reached {
		t.Fatalf("refresh without an id token: %d %v", res.Rec.Code, res.Err)
	}
	if s := readSession(t, b); s.Fresh <= time.Now().Unix() {
		t.Errorf("session still stale after refresh: %+v", s)
	}

	// A refresh the provider refuses starts a new login.
	ip.set(func(ip *idp) { ip.refreshFails = true })
	rewriteSession(t, b, func(s *session) { s.AccessExp = time.Now().Add(-time.Minute).Unix() })
	res = b.get("/")
	if res.Reached || res.Rec.Code != http.StatusFound || !strings.HasPrefix(res.Rec.Header().Get("Location"), ip.URL+"/authorize") {
		t.Fatalf("failed refresh: reached %v, status %d, err %v", res.Reached, res.Rec.Code, res.Err)
	}
	if b.cookie("limen_session") != nil {
		t.Error("the refused session was not cleared")
	}
	ip.mu.Lock()
	n := ip.refreshes
	ip.mu.Unlock()
	if n != 3 {
		t.Errorf("%d refresh calls, want 3", n)
	}
}

func TestSessionEnds(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	ip.set(func(ip *idp) { ip.noRefresh = true })
	p := buildFor(t, ip, "")
	for name, edit := range map[string]func(*session){
		"id token expired, no refresh token": func(s *session) { s.Fresh = time.Now().Add(-time.Second).Unix() },
		"session_ttl over":                   func(s *session) { s.End = time.Now().Add(-time.Second).Unix() },
	} {
		b := newBrowser(t, ip, p)
		b.login("/")
		if s := readSession(t, b); s.Refresh != "" {
			t.Fatalf("unexpected refresh token: %+v", s)
		}
		rewriteSession(t, b, edit)
		res := b.get("/")
		if res.Reached || res.Rec.Code != http.StatusFound {
			t.Errorf("%s: reached %v, status %d", name, res.Reached, res.Rec.Code)
		}
	}
}

func TestOversizedSession(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	ip.set(func(ip *idp) { ip.idHook = func(c gojwt.MapClaims) { c["blob"] = strings.Repeat("x", 6000) } })
	b := newBrowser(t, ip, buildFor(t, ip, `, "forward_claims": {"X-User-Email": "email"}`))
	b.login("/")
	if n := len(b.cookie("limen_session").Value); n > maxCookieBytes {
		t.Fatalf("session cookie of %d bytes", n)
	}
	res := b.get("/")
	if !res.Reached || res.Seen.Header.Get("X-User-Email") != "ann@example.com" {
		t.Fatalf("reached %v, forwarded %q", res.Reached, res.Seen.Header.Get("X-User-Email"))
	}
	if _, ok := res.ex.Principal.Claims["blob"]; ok {
		t.Error("the oversized claim was kept")
	}

	// Claims too large even for the slim form: only the login itself is kept.
	ss := &session{Sub: "user-1", Claims: map[string]any{"email": strings.Repeat("e", 6000)}, Refresh: "rt", Fresh: 1, End: 2}
	v, err := testSealer(t, ip).sealSession(ss, []string{"email"})
	if err != nil || len(v) > maxCookieBytes {
		t.Fatalf("slim session: %d bytes, %v", len(v), err)
	}
	var back session
	if err := testSealer(t, ip).open(testSealer(t, ip).sessionAD, v, &back); err != nil || back.Claims != nil || back.Refresh != "rt" || back.Sub != "user-1" {
		t.Fatalf("slim session %+v, %v", back, err)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	t.Run("end_session_endpoint", func(t *testing.T) {
		t.Parallel()
		ip := newIDP(t)
		b := newBrowser(t, ip, buildFor(t, ip, ""))
		b.login("/")
		idToken := readSession(t, b).IDToken
		res := b.get("/oauth2/logout")
		loc, _ := url.Parse(res.Rec.Header().Get("Location"))
		if res.Rec.Code != http.StatusFound || res.Reached || loc.Host != strings.TrimPrefix(ip.URL, "https://") || loc.Path != "/logout" {
			t.Fatalf("logout: %d, Location %v, err %v", res.Rec.Code, loc, res.Err)
		}
		q := loc.Query()
		if q.Get("id_token_hint") != idToken || q.Get("post_logout_redirect_uri") != "https://app.test/bye" || q.Get("client_id") != clientID {
			t.Errorf("end-session query %v", q)
		}
		if b.cookie("limen_session") != nil {
			t.Error("the session outlives logout")
		}
		if res := b.get("/"); res.Reached {
			t.Error("logged out, still let in")
		}
	})
	t.Run("no end_session_endpoint", func(t *testing.T) {
		t.Parallel()
		ip := newIDP(t)
		ip.set(func(ip *idp) { ip.endSession = false })
		b := newBrowser(t, ip, buildFor(t, ip, `, "logout_path": "/bye-bye"`))
		b.login("/")
		r := page("/bye-bye")
		r.Method = http.MethodPost
		res := b.do(r)
		if res.Rec.Code != http.StatusSeeOther || res.Rec.Header().Get("Location") != "https://app.test/bye" {
			t.Fatalf("logout: %d %q", res.Rec.Code, res.Rec.Header().Get("Location"))
		}
		if b.cookie("limen_session") != nil {
			t.Error("the session outlives logout")
		}
	})
}

func TestProviderDown(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	ip.set(func(ip *idp) { ip.down = true })
	p := buildFor(t, ip, "")
	b := newBrowser(t, ip, p)
	res := b.get("/")
	wantError(t, res, http.StatusServiceUnavailable, "auth_unavailable")
	if pe := policytest.PolicyError(res.Err); pe.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	// Within the retry interval the failure is answered at once, without another attempt.
	wantError(t, b.get("/"), http.StatusServiceUnavailable, "auth_unavailable")

	// Logging out still works: the local session ends.
	if res := b.get("/oauth2/logout"); res.Rec.Code != http.StatusFound || res.Rec.Header().Get("Location") != "https://app.test/bye" {
		t.Errorf("logout while the provider is down: %d %q", res.Rec.Code, res.Rec.Header().Get("Location"))
	}

	// Once the provider is back and the retry interval has passed, logins work.
	ip.set(func(ip *idp) { ip.down = false })
	p.disc.mu.Lock()
	p.disc.retryAt = time.Time{}
	p.disc.mu.Unlock()
	b.login("/")
	if res := b.get("/"); !res.Reached {
		t.Fatalf("after recovery: %d %v", res.Rec.Code, res.Err)
	}
}

func TestProviderShared(t *testing.T) {
	t.Parallel()
	ip := newIDP(t)
	pool := &policytest.Pool{}
	a := buildWith(t, ip, pool, "")
	b := buildWith(t, ip, pool, `, "cookie_name": "other"`)
	if pool.Len() != 1 || a.disc != b.disc {
		t.Fatalf("two policies for one issuer hold %d providers", pool.Len())
	}
	_ = a.Close()
	_ = b.Close()
	if pool.Len() != 0 {
		t.Fatal("the provider outlives its last policy")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	base := map[string]any{"issuer": "https://login.example.com", "client_id": "app", "client_secret_env": secretEnv,
		"session_key_env": keyEnv, "redirect_url": "https://app.example.com/oauth2/callback"}
	cases := []struct {
		name string
		edit map[string]any // nil value deletes
		want string
	}{
		{"http issuer", map[string]any{"issuer": "http://login.example.com"}, "issuer"},
		{"missing issuer", map[string]any{"issuer": nil}, "issuer is required"},
		{"missing client_id", map[string]any{"client_id": nil}, "client_id is required"},
		{"missing redirect_url", map[string]any{"redirect_url": nil}, "redirect_url is required"},
		{"relative redirect_url", map[string]any{"redirect_url": "/oauth2/callback"}, "redirect_url"},
		{"http redirect_url", map[string]any{"redirect_url": "http://app.example.com/cb"}, "redirect_url"},
		{"redirect_url without a path", map[string]any{"redirect_url": "https://app.example.com/"}, "path of its own"},
		{"scopes without openid", map[string]any{"scopes": []string{"profile", "email"}}, "must contain openid"},
		{"missing client_secret_env", map[string]any{"client_secret_env": nil}, "client_secret_env is required"},
		{"secret given inline", map[string]any{"client_secret_env": "${SECRET}"}, "variable's name"},
		{"unset secret", map[string]any{"client_secret_env": unsetEnv}, "unset or empty"},
		{"unset session key", map[string]any{"session_key_env": unsetEnv}, "unset or empty"},
		{"short session key", map[string]any{"session_key_env": shortKeyEnv}, "16 bytes"},
		{"session key not a key", map[string]any{"session_key_env": secretEnv}, "want 32 bytes"},
		{"missing session_key_env", map[string]any{"session_key_env": nil}, "session_key_env is required"},
		{"bad cookie name", map[string]any{"cookie_name": "a;b"}, "cookie_name"},
		{"short session_ttl", map[string]any{"session_ttl": "10s"}, "session_ttl"},
		{"logout path is the callback", map[string]any{"logout_path": "/oauth2/callback"}, "must differ"},
		{"relative logout path", map[string]any{"logout_path": "logout"}, "logout_path"},
		{"http post-logout URL", map[string]any{"post_logout_redirect_url": "http://app.example.com/"}, "post_logout_redirect_url"},
		{"missing ca", map[string]any{"ca": "nope.pem"}, "ca:"},
		{"unknown key", map[string]any{"client_secret": "x"}, "unknown field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := map[string]any{}
			for k, v := range base {
				cfg[k] = v
			}
			for k, v := range tc.edit {
				if v == nil {
					delete(cfg, k)
				} else {
					cfg[k] = v
				}
			}
			raw, _ := json.Marshal(cfg)
			pool := &policytest.Pool{}
			p, err := policytest.Build(Kind, string(raw), func(bc *policy.BuildContext) { bc.Pool, bc.BaseDir = pool, t.TempDir() })
			if err == nil {
				_ = p.(*login).Close()
				t.Fatalf("%s builds", raw)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if pool.Len() != 0 {
				t.Error("a failed build holds a pooled provider")
			}
		})
	}
	// Validate alone needs no secrets in the environment.
	k, _ := policy.Lookup(Kind)
	raw, _ := json.Marshal(map[string]any{"issuer": "https://login.example.com", "client_id": "app", "client_secret_env": unsetEnv,
		"session_key_env": unsetEnv, "redirect_url": "https://app.example.com/oauth2/callback"})
	if err := k.Check(raw); err != nil {
		t.Errorf("Check reads the environment: %v", err)
	}
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i * 7)
	}
	for _, s := range []string{hex.EncodeToString(key), base64.StdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key), " " + hex.EncodeToString(key) + "\n"} {
		got, err := parseKey(s)
		if err != nil || string(got) != string(key) {
			t.Errorf("parseKey(%q) = %x, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "short", hex.EncodeToString(key[:16]), base64.StdEncoding.EncodeToString(bytes48())} {
		if _, err := parseKey(s); err == nil {
			t.Errorf("parseKey(%q) accepted", s)
		}
	}
}

// bytes48 is 48 bytes whose base64 form is not also hex.
func bytes48() []byte {
	b := make([]byte, 48)
	for i := range b {
		b[i] = 0xff
	}
	return b
}

func TestDocExamples(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := httptest.NewUnstartedServer(http.NotFoundHandler()) // only for a certificate
	s.StartTLS()
	s.Close()
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "certs", "idp-ca.pem"), pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	// Discovery is lazy: building the examples sends nothing over the network.
	pool := &policytest.Pool{}
	policytest.CheckDocExamples(t, "../../docs/policies/oidc.md", Kind, func(bc *policy.BuildContext) {
		bc.Pool, bc.Consumers, bc.BaseDir = pool, testDir(), dir
	})
}
