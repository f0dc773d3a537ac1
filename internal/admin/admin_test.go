package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/usage"
)

// memController is a real in-memory controller: Apply changes what Config returns.
type memController struct {
	mu     sync.Mutex
	doc    string
	hash   string
	n      int
	actors []string
	ready  atomic.Bool
}

func newCtl() *memController {
	c := &memController{doc: `{"routes":[]}`, hash: "h0"}
	c.ready.Store(true)
	return c
}

func (c *memController) Config() ([]byte, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return []byte(c.doc), c.hash
}

func (c *memController) Validate(doc []byte) error {
	if strings.Contains(string(doc), "bad") {
		return errors.Join(errors.New("limen.yaml:1: routes: bad thing"), errors.New("limen.yaml:2: other bad thing"))
	}
	if strings.Contains(string(doc), "ugly") {
		return errors.New("limen.yaml:3: first\nlimen.yaml:4: second")
	}
	return nil
}

func (c *memController) Apply(doc []byte, ifMatch, actor string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ifMatch != c.hash {
		return "", errors.Join(ErrPreconditionFailed, errors.New("stale"))
	}
	if err := c.Validate(doc); err != nil {
		return "", err
	}
	c.n++
	c.doc, c.hash = string(doc), "h"+strings.Repeat("x", c.n)
	c.actors = append(c.actors, actor)
	return c.hash, nil
}

func (c *memController) Routes() any    { return []string{"r"} }
func (c *memController) Upstreams() any { return []string{"u"} }
func (c *memController) Status() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return map[string]string{"hash": c.hash}
}
func (c *memController) Ready() bool { return c.ready.Load() }

func (c *memController) Usage(context.Context, string, time.Time, time.Time, []string) ([]usage.Row, error) {
	return nil, ErrUsageOff
}

var (
	writeTok = strings.Repeat("w", 32)
	readTok  = strings.Repeat("r", 32)
	metrics  = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "limen_x 1\n") })
)

func do(h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Host = "127.0.0.1:9901"
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			r.Host = hdr[i+1]
			continue
		}
		r.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func TestAccessRules(t *testing.T) {
	t.Parallel()
	ctl := newCtl()
	tokens := []Token{{"ci", writeTok, "write"}, {"grafana", readTok, "read"}}
	withTokens := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: tokens}, ctl, metrics, nil)
	readOnly := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: tokens[1:]}, ctl, metrics, nil)
	noTokens := New(Options{Addrs: []string{"127.0.0.1:9901"}}, ctl, metrics, nil)
	localhost := New(Options{Addrs: []string{"localhost:9901", "[::1]:9901"}}, ctl, metrics, nil)
	public := New(Options{Addrs: []string{":9901"}}, ctl, metrics, nil)
	wildcard := New(Options{Addrs: []string{"0.0.0.0:9901"}}, ctl, metrics, nil)
	mixed := New(Options{Addrs: []string{"127.0.0.1:9901", "10.0.0.5:9901"}}, ctl, metrics, nil)
	remote := New(Options{Addrs: []string{"10.0.0.5:9901"}, Tokens: tokens}, ctl, metrics, nil)
	publicTokens := New(Options{Addrs: []string{":9901"}, Tokens: tokens}, ctl, metrics, nil)
	anyPort := New(Options{Addrs: []string{"127.0.0.1:0"}}, ctl, metrics, nil)
	ipv6 := New(Options{Addrs: []string{"[::1]:9901"}}, ctl, metrics, nil)
	emptySecret := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: []Token{{"broken", "", "write"}, tokens[1]}}, ctl, metrics, nil)
	yaml := []string{"Content-Type", "application/yaml"}
	w := []string{"Authorization", "Bearer " + writeTok}
	rd := []string{"Authorization", "Bearer " + readTok}
	cat := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name   string
		h      http.Handler
		method string
		path   string
		hdr    []string
		want   int
	}{
		{"loopback read without tokens", noTokens, "GET", "/admin/routes", nil, 200},
		{"localhost alias host", noTokens, "GET", "/admin/routes", []string{"Host", "localhost:9901"}, 200},
		{"another loopback socket is not this one", noTokens, "GET", "/admin/routes", []string{"Host", "[::1]:9901"}, 403},
		{"host without port means port 80", noTokens, "GET", "/admin/routes", []string{"Host", "127.0.0.1"}, 403},
		{"host case-insensitive", noTokens, "GET", "/admin/routes", []string{"Host", "LocalHost:9901"}, 200},
		{"port 0 accepts the bound port", anyPort, "GET", "/admin/routes", []string{"Host", "127.0.0.1:43210"}, 200},
		{"port 0 still checks the host", anyPort, "GET", "/admin/routes", []string{"Host", "evil.example:43210"}, 403},
		{"ipv6 loopback addr", ipv6, "GET", "/admin/routes", []string{"Host", "[::1]:9901"}, 200},
		{"ipv6 loopback localhost", ipv6, "GET", "/admin/routes", []string{"Host", "localhost:9901"}, 200},
		{"alias with another port", noTokens, "GET", "/admin/routes", []string{"Host", "localhost:9902"}, 403},
		{"localhost addr accepts 127.0.0.1", localhost, "GET", "/admin/status", nil, 200},
		{"foreign host (DNS rebinding)", noTokens, "GET", "/admin/routes", []string{"Host", "evil.example:9901"}, 403},
		{"foreign host on probes", noTokens, "GET", "/healthz", []string{"Host", "evil.example:9901"}, 403},
		{"foreign origin (CSRF)", noTokens, "GET", "/admin/routes", []string{"Origin", "https://evil.example"}, 403},
		{"own host over https origin", noTokens, "GET", "/admin/routes", []string{"Origin", "https://127.0.0.1:9901"}, 403},
		{"origin with another port", noTokens, "GET", "/admin/routes", []string{"Origin", "http://127.0.0.1:9902"}, 403},
		{"origin with a path", noTokens, "GET", "/admin/routes", []string{"Origin", "http://127.0.0.1:9901/x"}, 403},
		{"foreign origin on a write", withTokens, "POST", "/admin/config/validate", cat(w, yaml, []string{"Origin", "http://evil.example"}), 403},
		{"null origin", noTokens, "GET", "/admin/routes", []string{"Origin", "null"}, 403},
		{"own origin", noTokens, "GET", "/admin/routes", []string{"Origin", "http://127.0.0.1:9901"}, 200},
		{"alias origin", noTokens, "GET", "/admin/routes", []string{"Origin", "http://localhost:9901"}, 200},
		{"no push without a write token", noTokens, "PUT", "/admin/config", cat([]string{"If-Match", "h0"}, yaml), 405},
		{"no validate without any token", noTokens, "POST", "/admin/config/validate", yaml, 404},
		{"no validate without a write token", readOnly, "POST", "/admin/config/validate", cat(rd, yaml), 404},
		{"port-only addr is not loopback", public, "GET", "/admin/routes", []string{"Host", ":9901"}, 403},
		{"port-only addr refuses probes too", public, "GET", "/healthz", []string{"Host", ":9901"}, 403},
		{"wildcard addr is not loopback", wildcard, "GET", "/admin/routes", []string{"Host", "0.0.0.0:9901"}, 403},
		{"one public addr is enough", mixed, "GET", "/admin/routes", nil, 403},
		{"remote with token", remote, "GET", "/admin/routes", cat([]string{"Host", "10.0.0.5:9901"}, rd), 200},
		{"remote: Host is not pinned off loopback", remote, "GET", "/admin/routes", cat([]string{"Host", "admin.internal:9901"}, rd), 200},
		{"remote: own origin is the Host", remote, "GET", "/admin/routes", cat([]string{"Host", "admin.internal:9901", "Origin", "http://admin.internal:9901"}, rd), 200},
		{"remote: foreign origin", remote, "GET", "/admin/routes", cat([]string{"Host", "admin.internal:9901", "Origin", "http://evil.example"}, rd), 403},
		{"wildcard with tokens serves any Host", publicTokens, "GET", "/admin/status", cat([]string{"Host", "gw.example.com:9901"}, rd), 200},
		{"wildcard with tokens needs one", publicTokens, "GET", "/admin/status", []string{"Host", "gw.example.com:9901"}, 401},
		{"wildcard write with write token", publicTokens, "POST", "/admin/config/validate", cat([]string{"Host", "gw.example.com:9901"}, w, yaml), 200},
		{"remote needs a token", remote, "GET", "/admin/routes", []string{"Host", "10.0.0.5:9901"}, 401},
		{"token required", withTokens, "GET", "/admin/routes", nil, 401},
		{"token required for metrics", withTokens, "GET", "/metrics", nil, 401},
		{"token required for config", withTokens, "GET", "/admin/config", nil, 401},
		{"wrong token", withTokens, "GET", "/admin/routes", []string{"Authorization", "Bearer " + strings.Repeat("z", 32)}, 401},
		{"token prefix", withTokens, "GET", "/admin/routes", []string{"Authorization", "Bearer " + readTok[:31]}, 401},
		{"basic scheme", withTokens, "GET", "/admin/routes", []string{"Authorization", "Basic " + readTok}, 401},
		{"bearer is case-insensitive", withTokens, "GET", "/admin/routes", []string{"Authorization", "bearer " + readTok}, 200},
		{"read token reads", withTokens, "GET", "/admin/status", rd, 200},
		{"write token reads", withTokens, "GET", "/admin/upstreams", w, 200},
		{"read token cannot validate", withTokens, "POST", "/admin/config/validate", cat(rd, yaml), 403},
		{"write needs the token even on loopback", withTokens, "POST", "/admin/config/validate", yaml, 401},
		{"empty secret never matches", emptySecret, "GET", "/admin/routes", []string{"Authorization", "Bearer "}, 401},
		{"empty secret: the other token works", emptySecret, "GET", "/admin/routes", rd, 200},
		{"read token cannot push", withTokens, "PUT", "/admin/config", cat(rd, yaml, []string{"If-Match", "h0"}), 403},
		{"write needs a config content type", withTokens, "POST", "/admin/config/validate", cat(w, []string{"Content-Type", "text/plain"}), 415},
		{"form posts refused", withTokens, "POST", "/admin/config/validate", cat(w, []string{"Content-Type", "application/x-www-form-urlencoded"}), 415},
		{"no content type", withTokens, "POST", "/admin/config/validate", w, 415},
		{"json with charset", withTokens, "POST", "/admin/config/validate", cat(w, []string{"Content-Type", "application/json; charset=utf-8"}), 200},
		{"x-yaml", withTokens, "POST", "/admin/config/validate", cat(w, []string{"Content-Type", "application/x-yaml"}), 200},
		{"text/yaml", withTokens, "POST", "/admin/config/validate", cat(w, []string{"Content-Type", "text/yaml"}), 200},
		{"probes need no token", withTokens, "GET", "/readyz", nil, 200},
		{"healthz needs no token", withTokens, "GET", "/healthz", nil, 200},
		{"metrics", withTokens, "GET", "/metrics", rd, 200},
		{"unknown endpoint", withTokens, "GET", "/admin/nope", rd, 404},
		{"wrong method", withTokens, "DELETE", "/admin/config", w, 405},
		{"wrong method on a read endpoint", withTokens, "POST", "/admin/routes", cat(w, yaml), 405},
		{"wrong method on a probe", withTokens, "POST", "/healthz", nil, 405},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := do(c.h, c.method, c.path, "x: 1", c.hdr...)
			if rec.Code != c.want {
				t.Fatalf("%d %s, want %d", rec.Code, rec.Body.String(), c.want)
			}
			if c.want == 405 && rec.Header().Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
			if c.want == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if c.want >= 400 && c.want != 405 {
				var body struct{ Error string }
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" {
					t.Fatalf("error body %q is not {\"error\": ...}", rec.Body.String())
				}
			}
		})
	}
}

func TestWriteHint(t *testing.T) {
	t.Parallel()
	h := New(Options{Addrs: []string{"127.0.0.1:9901"}}, newCtl(), metrics, nil)
	rec := do(h, "PUT", "/admin/config", "{}", "Content-Type", "application/json", "If-Match", "h0")
	if rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" || !strings.Contains(rec.Body.String(), "configure an admin token with scope: write") {
		t.Fatalf("%d %s", rec.Code, rec.Body.String())
	}
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	h := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: []Token{{"ci", writeTok, "write"}}}, newCtl(), metrics, nil)
	big := strings.Repeat("a", maxBody+1)
	for _, c := range []struct{ method, path string }{{"POST", "/admin/config/validate"}, {"PUT", "/admin/config"}} {
		rec := do(h, c.method, c.path, big, "Authorization", "Bearer "+writeTok, "Content-Type", "application/yaml", "If-Match", "h0")
		if rec.Code != 413 {
			t.Fatalf("%s %s with 16 MiB + 1: %d", c.method, c.path, rec.Code)
		}
	}
}

func TestConfigPush(t *testing.T) {
	t.Parallel()
	ctl := newCtl()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: []Token{{"ci", writeTok, "write"}}}, ctl, metrics, log)
	auth := []string{"Authorization", "Bearer " + writeTok, "Content-Type", "application/yaml"}
	with := func(kv ...string) []string { return append(append([]string{}, auth...), kv...) }

	rec := do(h, "GET", "/admin/config", "", auth...)
	if rec.Code != 200 || rec.Header().Get("ETag") != `"h0"` || rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != `{"routes":[]}` {
		t.Fatalf("GET config: %d %v %s", rec.Code, rec.Header(), rec.Body.String())
	}
	if rec := do(h, "PUT", "/admin/config", "routes: []", auth...); rec.Code != 428 {
		t.Fatalf("no If-Match: %d", rec.Code)
	}
	if rec := do(h, "PUT", "/admin/config", "routes: []", with("If-Match", `"stale"`)...); rec.Code != 412 {
		t.Fatalf("stale If-Match: %d %s", rec.Code, rec.Body.String())
	}
	rec = do(h, "PUT", "/admin/config", "bad", with("If-Match", `"h0"`)...)
	var failed struct{ Errors []string }
	if err := json.Unmarshal(rec.Body.Bytes(), &failed); rec.Code != 422 || err != nil ||
		len(failed.Errors) != 2 || failed.Errors[1] != "limen.yaml:2: other bad thing" {
		t.Fatalf("invalid push: %d %s", rec.Code, rec.Body.String())
	}
	rec = do(h, "PUT", "/admin/config", "routes: []", with("If-Match", `W/"h0"`)...)
	var ok struct{ Hash string }
	if err := json.Unmarshal(rec.Body.Bytes(), &ok); rec.Code != 200 || err != nil || ok.Hash != "hx" || rec.Header().Get("ETag") != `"hx"` {
		t.Fatalf("push: %d %s %v", rec.Code, rec.Body.String(), rec.Header())
	}
	rec = do(h, "GET", "/admin/config", "", auth...)
	if rec.Body.String() != "routes: []" || rec.Header().Get("ETag") != `"hx"` {
		t.Fatalf("config after push: %s %v", rec.Body.String(), rec.Header())
	}
	// The old ETag is now stale: a second writer working from it is refused.
	if rec := do(h, "PUT", "/admin/config", "routes: [x]", with("If-Match", `"h0"`)...); rec.Code != 412 {
		t.Fatalf("push from a stale ETag: %d", rec.Code)
	}
	if len(ctl.actors) != 1 || !strings.HasPrefix(ctl.actors[0], "ci@") {
		t.Fatalf("actors %v, want ci@<remote>", ctl.actors)
	}
	if s := logs.String(); !strings.Contains(s, "token=ci") || !strings.Contains(s, "hash=hx") || !strings.Contains(s, "remote=192.0.2.1:1234") || !strings.Contains(s, "other bad thing") {
		t.Fatalf("writes not logged with token, hash and error:\n%s", s)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	h := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: []Token{{"ci", writeTok, "write"}}}, newCtl(), metrics, nil)
	auth := []string{"Authorization", "Bearer " + writeTok, "Content-Type", "application/yaml"}
	cases := []struct {
		name, body string
		status     int
		valid      bool
		errors     []string
	}{
		{"good", "routes: []", 200, true, nil},
		{"joined errors", "bad", 422, false, []string{"limen.yaml:1: routes: bad thing", "limen.yaml:2: other bad thing"}},
		{"multi-line error", "ugly", 422, false, []string{"limen.yaml:3: first", "limen.yaml:4: second"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			rec := do(h, "POST", "/admin/config/validate", c.body, auth...)
			var got struct {
				Valid  bool
				Errors []string
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != c.status || got.Valid != c.valid {
				t.Fatalf("%d %s", rec.Code, rec.Body.String())
			}
			if strings.Join(got.Errors, "|") != strings.Join(c.errors, "|") {
				t.Fatalf("errors %q, want %q", got.Errors, c.errors)
			}
		})
	}
}

func TestReadEndpointsJSON(t *testing.T) {
	t.Parallel()
	h := New(Options{Addrs: []string{"127.0.0.1:9901"}}, newCtl(), metrics, nil)
	for path, want := range map[string]string{"/admin/routes": `["r"]`, "/admin/upstreams": `["u"]`, "/admin/status": `{"hash":"h0"}`} {
		rec := do(h, "GET", path, "")
		var got, exp any
		_ = json.Unmarshal([]byte(want), &exp)
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %s %v", path, rec.Body.String(), err)
		}
		if a, b := must(json.Marshal(got)), must(json.Marshal(exp)); a != b {
			t.Fatalf("%s: %s, want %s", path, a, b)
		}
	}
	if rec := do(h, "GET", "/metrics", ""); rec.Body.String() != "limen_x 1\n" {
		t.Fatalf("metrics: %q", rec.Body.String())
	}
}

func must(b []byte, err error) string {
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestReadyzFlips(t *testing.T) {
	t.Parallel()
	ctl := newCtl()
	h := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: []Token{{"ci", writeTok, "write"}}}, ctl, metrics, nil)
	if rec := do(h, "GET", "/readyz", ""); rec.Code != 200 || rec.Body.String() != "ready\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
	ctl.ready.Store(false)
	if rec := do(h, "GET", "/readyz", ""); rec.Code != 503 || !strings.Contains(rec.Body.String(), "not ready") {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
	if rec := do(h, "GET", "/healthz", ""); rec.Code != 200 || rec.Body.String() != "ok\n" {
		t.Fatalf("healthz while not ready: %d", rec.Code)
	}
}

func TestOps(t *testing.T) {
	t.Parallel()
	ctl := newCtl()
	srv := httptest.NewServer(NewOps(ctl, metrics))
	defer srv.Close()
	get := func(method, p string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+p, nil)
		req.Host = "anything.example" // ops has no Host check: probes come from anywhere
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if c, b := get("GET", "/healthz"); c != 200 || b != "ok\n" {
		t.Fatalf("healthz %d %q", c, b)
	}
	if c, _ := get("GET", "/readyz"); c != 200 {
		t.Fatalf("readyz %d", c)
	}
	if c, b := get("GET", "/metrics"); c != 200 || b != "limen_x 1\n" {
		t.Fatalf("metrics %d %q", c, b)
	}
	ctl.ready.Store(false)
	if c, _ := get("GET", "/readyz"); c != 503 {
		t.Fatalf("readyz not ready: %d", c)
	}
	for _, p := range []string{"/admin/config", "/admin/routes", "/admin/status"} {
		if c, _ := get("GET", p); c != 404 {
			t.Fatalf("ops serves %s: %d", p, c)
		}
	}
	if c, _ := get("POST", "/healthz"); c != 405 {
		t.Fatalf("POST /healthz: %d", c)
	}
}

func TestIfMatchForms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, ifMatch string
		want          int
	}{
		{"missing", "", 428},
		{"star is not accepted", "*", 428},
		{"blank", "  ", 428},
		{"quoted", `"h0"`, 200},
		{"weak", `W/"h0"`, 200},
		{"bare", "h0", 200},
		{"list with the current tag", `"old", "h0"`, 200},
		{"list without it", `"old", "older"`, 412},
		{"stale", `"h9"`, 412},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: []Token{{"ci", writeTok, "write"}}}, newCtl(), metrics, nil)
			rec := do(h, "PUT", "/admin/config", "routes: []", "Authorization", "Bearer "+writeTok, "Content-Type", "application/json", "If-Match", c.ifMatch)
			if rec.Code != c.want {
				t.Fatalf("If-Match %q: %d %s, want %d", c.ifMatch, rec.Code, rec.Body.String(), c.want)
			}
		})
	}
}

func TestConfigConditionalGet(t *testing.T) {
	t.Parallel()
	h := New(Options{Addrs: []string{"127.0.0.1:9901"}}, newCtl(), metrics, nil)
	if rec := do(h, "GET", "/admin/config", "", "If-None-Match", `"h0"`); rec.Code != 304 || rec.Body.Len() != 0 {
		t.Fatalf("If-None-Match current: %d %q", rec.Code, rec.Body.String())
	}
	if rec := do(h, "GET", "/admin/config", "", "If-None-Match", `"old"`); rec.Code != 200 {
		t.Fatalf("If-None-Match stale: %d", rec.Code)
	}
	if rec := do(h, "HEAD", "/admin/config", ""); rec.Code != 200 || rec.Header().Get("ETag") != `"h0"` {
		t.Fatalf("HEAD: %d %v", rec.Code, rec.Header())
	}
}

func TestAllowReflectsWriteTokens(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		tokens []Token
		want   string
	}{
		{"no tokens", nil, "GET, HEAD"},
		{"read only", []Token{{"g", readTok, "read"}}, "GET, HEAD"},
		{"write", []Token{{"ci", writeTok, "write"}}, "GET, HEAD, PUT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: c.tokens}, newCtl(), metrics, nil)
			rec := do(h, "DELETE", "/admin/config", "", "Authorization", "Bearer "+writeTok)
			if len(c.tokens) > 0 && c.tokens[0].Secret == readTok {
				rec = do(h, "DELETE", "/admin/config", "", "Authorization", "Bearer "+readTok)
			}
			if rec.Code != 405 || rec.Header().Get("Allow") != c.want {
				t.Fatalf("%d Allow %q, want %q", rec.Code, rec.Header().Get("Allow"), c.want)
			}
		})
	}
}

// TestOverRealSocket drives the handler through a real listener on 127.0.0.1, as the server
// binds it: the client's own Host header is the admin address.
func TestOverRealSocket(t *testing.T) {
	t.Parallel()
	ctl := newCtl()
	srv := httptest.NewUnstartedServer(nil)
	addr := srv.Listener.Addr().String()
	srv.Config.Handler = New(Options{Addrs: []string{addr}, Tokens: []Token{{"ci", writeTok, "write"}}}, ctl, metrics, nil)
	srv.Start()
	defer srv.Close()
	req, _ := http.NewRequest("PUT", srv.URL+"/admin/config", strings.NewReader("routes: [a]"))
	req.Header.Set("Authorization", "Bearer "+writeTok)
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("If-Match", `"h0"`)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("push over a socket: %d", resp.StatusCode)
	}
	if doc, hash := ctl.Config(); string(doc) != "routes: [a]" || hash != "hx" {
		t.Fatalf("controller holds %q %q", doc, hash)
	}
}

// FuzzAccess throws arbitrary request headers at the access rules and checks the invariants:
// nothing panics; with tokens configured nothing but a probe succeeds without a valid token; a
// write succeeds only with the write token; on loopback nothing succeeds under a foreign Host.
func FuzzAccess(f *testing.F) {
	f.Add("GET", "/admin/routes", "127.0.0.1:9901", "", "Bearer "+readTok, "")
	f.Add("POST", "/admin/config/validate", "localhost:9901", "http://localhost:9901", "Bearer "+writeTok, "application/yaml")
	f.Add("PUT", "/admin/config", "evil.example:9901", "null", "bearer  "+writeTok+" ", "text/yaml; charset=utf-8")
	f.Add("GET", "/healthz", "[::1]:9901", "http://[::1]:9901", "Basic x", "")
	ctl := newCtl()
	h := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: []Token{{"ci", writeTok, "write"}, {"g", readTok, "read"}}}, ctl, metrics, nil)
	f.Fuzz(func(t *testing.T, method, path, host, origin, auth, ct string) {
		r, err := http.NewRequest(method, "http://127.0.0.1:9901/", strings.NewReader("x: 1"))
		if err != nil {
			return
		}
		r.URL.Path = path
		r.Host = host
		r.RemoteAddr = "127.0.0.1:50000"
		for k, v := range map[string]string{"Origin": origin, "Authorization": auth, "Content-Type": ct, "If-Match": `"nope"`} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code >= 300 {
			return
		}
		if h := strings.ToLower(host); h != "127.0.0.1:9901" && h != "localhost:9901" {
			t.Fatalf("%d under Host %q", rec.Code, host)
		}
		if path == "/healthz" || path == "/readyz" {
			return
		}
		secret := strings.TrimSpace(auth[min(len(auth), 7):])
		if secret != readTok && secret != writeTok {
			t.Fatalf("%d %s %s without a valid token (%q)", rec.Code, method, path, auth)
		}
		if method != "GET" && method != "HEAD" && secret != writeTok {
			t.Fatalf("%d %s %s without the write token", rec.Code, method, path)
		}
	})
}
