package admin

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// memController is a real in-memory controller: Apply changes what Config returns.
type memController struct {
	mu    sync.Mutex
	doc   string
	hash  string
	ready bool
	n     int
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
	return nil
}

func (c *memController) Apply(doc []byte, ifMatch, actor string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ifMatch != c.hash {
		return "", ErrPreconditionFailed
	}
	if err := c.Validate(doc); err != nil {
		return "", err
	}
	c.n++
	c.doc, c.hash = string(doc), "h"+strings.Repeat("x", c.n)
	return c.hash, nil
}

func (c *memController) Routes() any    { return []string{"r"} }
func (c *memController) Upstreams() any { return []string{"u"} }
func (c *memController) Status() any    { return map[string]string{"hash": c.hash} }
func (c *memController) Ready() bool    { return c.ready }

var (
	writeTok = strings.Repeat("w", 32)
	readTok  = strings.Repeat("r", 32)
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
	ctl := &memController{doc: "{}", hash: "h0", ready: true}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "limen_x 1\n") })
	withTokens := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: []Token{{"ci", writeTok, "write"}, {"grafana", readTok, "read"}}}, ctl, metrics, nil)
	noTokens := New(Options{Addrs: []string{"127.0.0.1:9901"}}, ctl, metrics, nil)
	public := New(Options{Addrs: []string{":9901"}}, ctl, metrics, nil)
	yaml := []string{"Content-Type", "application/yaml"}
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
		{"foreign host (DNS rebinding)", noTokens, "GET", "/admin/routes", []string{"Host", "evil.example:9901"}, 403},
		{"foreign origin (CSRF)", noTokens, "GET", "/admin/routes", []string{"Origin", "https://evil.example"}, 403},
		{"own origin", noTokens, "GET", "/admin/routes", []string{"Origin", "http://127.0.0.1:9901"}, 200},
		{"no write endpoint without a write token", noTokens, "PUT", "/admin/config", append([]string{"If-Match", "h0"}, yaml...), 404},
		{"non-loopback without tokens", public, "GET", "/admin/routes", []string{"Host", ":9901"}, 401},
		{"token required", withTokens, "GET", "/admin/routes", nil, 401},
		{"wrong token", withTokens, "GET", "/admin/routes", []string{"Authorization", "Bearer " + strings.Repeat("z", 32)}, 401},
		{"read token reads", withTokens, "GET", "/admin/status", []string{"Authorization", "Bearer " + readTok}, 200},
		{"read token cannot write", withTokens, "POST", "/admin/config/validate", append([]string{"Authorization", "Bearer " + readTok}, yaml...), 403},
		{"write needs a config content type", withTokens, "POST", "/admin/config/validate", []string{"Authorization", "Bearer " + writeTok, "Content-Type", "text/plain"}, 415},
		{"probes need no token", withTokens, "GET", "/readyz", nil, 200},
		{"metrics", withTokens, "GET", "/metrics", []string{"Authorization", "Bearer " + readTok}, 200},
		{"unknown endpoint", withTokens, "GET", "/admin/nope", []string{"Authorization", "Bearer " + readTok}, 404},
	}
	for _, c := range cases {
		if rec := do(c.h, c.method, c.path, "x: 1", c.hdr...); rec.Code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, rec.Code, rec.Body.String(), c.want)
		}
	}
}

func TestConfigPush(t *testing.T) {
	ctl := &memController{doc: "{}", hash: "h0", ready: true}
	h := New(Options{Addrs: []string{"127.0.0.1:9901"}, Tokens: []Token{{"ci", writeTok, "write"}}}, ctl, http.NotFoundHandler(), nil)
	auth := []string{"Authorization", "Bearer " + writeTok, "Content-Type", "application/yaml"}
	if rec := do(h, "PUT", "/admin/config", "routes: []", auth...); rec.Code != 428 {
		t.Fatalf("no If-Match: %d", rec.Code)
	}
	if rec := do(h, "PUT", "/admin/config", "routes: []", append(auth, "If-Match", `"stale"`)...); rec.Code != 412 {
		t.Fatalf("stale If-Match: %d", rec.Code)
	}
	rec := do(h, "PUT", "/admin/config", "bad", append(auth, "If-Match", `"h0"`)...)
	if rec.Code != 422 || !strings.Contains(rec.Body.String(), "other bad thing") {
		t.Fatalf("invalid push: %d %s", rec.Code, rec.Body.String())
	}
	rec = do(h, "PUT", "/admin/config", "routes: []", append(auth, "If-Match", `W/"h0"`)...)
	if rec.Code != 200 || rec.Header().Get("ETag") != `"hx"` {
		t.Fatalf("push: %d %s %v", rec.Code, rec.Body.String(), rec.Header())
	}
	rec = do(h, "GET", "/admin/config", "", auth...)
	if rec.Body.String() != "routes: []" || rec.Header().Get("ETag") != `"hx"` {
		t.Fatalf("config after push: %s", rec.Body.String())
	}
	if rec := do(h, "POST", "/admin/config/validate", "bad", auth...); rec.Code != 422 {
		t.Fatalf("validate bad: %d", rec.Code)
	}
	if rec := do(h, "POST", "/admin/config/validate", "fine", auth...); rec.Code != 200 {
		t.Fatalf("validate good: %d", rec.Code)
	}
}

func TestReadyzFlipsAndOps(t *testing.T) {
	ctl := &memController{ready: true}
	ops := NewOps(ctl, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "m") }))
	get := func(p string) int {
		rec := httptest.NewRecorder()
		ops.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		return rec.Code
	}
	if get("/readyz") != 200 || get("/healthz") != 200 || get("/metrics") != 200 {
		t.Fatal("ops endpoints")
	}
	ctl.ready = false
	if get("/readyz") != 503 {
		t.Fatal("readyz did not fail")
	}
	if get("/admin/config") != 404 {
		t.Fatal("ops listener serves admin endpoints")
	}
}
