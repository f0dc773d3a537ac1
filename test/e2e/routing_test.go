package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
)

const routingConfig = `
listeners:
  - name: public
    addr: 127.0.0.1:0
upstreams:
  app:
    targets: [{ url: "{{.app}}" }]
  admin:
    targets: [{ url: "{{.admin}}" }]
routes:
  - name: public
    match: { path: "/public/{rest...}" }
    upstream: app
  - name: admin-area
    match: { path: "/admin/{rest...}" }
    upstream: admin
  - name: user
    match: { path: "/users/{id}", methods: [GET] }
    rewrite: { path: "/v1/accounts/{id}/profile" }
    upstream: app
  - name: user-me
    match: { path: /users/me, methods: [GET] }
    respond: { status: 200, body: "me" }
  - name: host-exact
    match: { hosts: [api.example.com], path: /where }
    respond: { body: exact }
  - name: host-wild
    match: { hosts: ["*.example.com"], path: /where }
    respond: { body: wildcard }
  - name: host-any
    match: { path: /where }
    respond: { body: any }
  - name: strip
    match: { path: "/svc/{rest...}" }
    rewrite: { strip_prefix: /svc, add_prefix: /internal }
    upstream: app
  - name: canary
    match: { path: /feature, headers: { X-Canary: "yes" } }
    respond: { body: canary }
  - name: stable
    match: { path: /feature }
    respond: { body: stable }
  - name: v2
    match: { path: /api, query: { version: "2" } }
    respond: { body: v2 }
  - name: keep-host
    match: { path: "/keep/{rest...}" }
    preserve_host: true
    upstream: app
`

func routingGateway(t *testing.T) *gw {
	app := backend(t, echo("app"))
	adm := backend(t, echo("admin"))
	return start(t, routingConfig, map[string]any{"app": app.URL, "admin": adm.URL})
}

func TestRoutingPrecedenceAndRewrites(t *testing.T) {
	x := routingGateway(t)
	cases := []struct {
		name, path string
		hdr        []string
		status     int
		body       string
		seenPath   string
	}{
		{name: "literal beats param", path: "/users/me", status: 200, body: "me"},
		{name: "param with rewrite template", path: "/users/42", status: 200, body: "app GET ", seenPath: "/v1/accounts/42/profile"},
		{name: "exact host beats wildcard", path: "/where", hdr: []string{"Host", "api.example.com"}, status: 200, body: "exact"},
		{name: "wildcard host beats any", path: "/where", hdr: []string{"Host", "Shop.Example.com.:8080"}, status: 200, body: "wildcard"},
		{name: "no host match falls back", path: "/where", hdr: []string{"Host", "other.test"}, status: 200, body: "any"},
		{name: "header matcher wins", path: "/feature", hdr: []string{"X-Canary", "yes"}, status: 200, body: "canary"},
		{name: "without header", path: "/feature", status: 200, body: "stable"},
		{name: "query matcher", path: "/api?version=2", status: 200, body: "v2"},
		{name: "query matcher miss", path: "/api?version=1", status: 404},
		{name: "strip and add prefix", path: "/svc/a/b?x=1", status: 200, seenPath: "/internal/a/b"},
		{name: "strip on segment boundary only", path: "/svcx", status: 404},
		{name: "unmatched is 404", path: "/nope", status: 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := get(t, x.url("public", c.path), c.hdr...)
			body := readBody(t, resp)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, c.status, body)
			}
			if c.body != "" && body != c.body {
				t.Errorf("body %q, want %q", body, c.body)
			}
			if c.seenPath != "" && resp.Header.Get("X-Seen-Path") != c.seenPath {
				t.Errorf("upstream saw path %q, want %q", resp.Header.Get("X-Seen-Path"), c.seenPath)
			}
			if resp.StatusCode == 404 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("404 content type %q, want problem+json", ct)
				}
			}
		})
	}
}

func TestMethodNotAllowedListsAllow(t *testing.T) {
	x := routingGateway(t)
	req, _ := http.NewRequest(http.MethodDelete, x.url("public", "/users/42"), nil)
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("status %d Allow %q, want 405 with GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
	var p map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || p["code"] != "method_not_allowed" {
		t.Fatalf("problem body %v (%v)", p, err)
	}
}

func TestHostAndProxyHeaders(t *testing.T) {
	x := routingGateway(t)
	resp := get(t, x.url("public", "/public/x"), "Host", "shop.example.com")
	readBody(t, resp)
	if h := resp.Header.Get("X-Seen-Host"); h == "shop.example.com" || h == "" {
		t.Errorf("upstream saw Host %q; want the target's host by default", h)
	}
	if xf := resp.Header.Get("X-Seen-X-Forwarded-Host"); xf != "shop.example.com" {
		t.Errorf("X-Forwarded-Host %q", xf)
	}
	if xf := resp.Header.Get("X-Seen-X-Forwarded-For"); xf != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want 127.0.0.1", xf)
	}
	if f := resp.Header.Get("X-Seen-Forwarded"); !strings.Contains(f, "for=127.0.0.1") {
		t.Errorf("Forwarded %q, want for=127.0.0.1", f)
	}
	id := resp.Header.Get("X-Request-Id")
	if id == "" || resp.Header.Get("X-Seen-X-Request-Id") != id {
		t.Errorf("request id returned %q, sent upstream %q", id, resp.Header.Get("X-Seen-X-Request-Id"))
	}

	resp = get(t, x.url("public", "/keep/x"), "Host", "shop.example.com")
	readBody(t, resp)
	if h := resp.Header.Get("X-Seen-Host"); h != "shop.example.com" {
		t.Errorf("preserve_host: upstream saw Host %q", h)
	}
}

// TestSpoofedHeadersStripped sends the headers a client might forge to impersonate a proxy or a
// consumer; none may reach the upstream from an untrusted peer.
func TestSpoofedHeadersStripped(t *testing.T) {
	x := routingGateway(t)
	resp := get(t, x.url("public", "/public/x"),
		"X-Forwarded-For", "1.2.3.4", "X-Real-IP", "1.2.3.4", "Forwarded", "for=1.2.3.4",
		"X-Request-ID", "forged-id", "X-Forwarded-Host", "evil.test", "X-Forwarded-Proto", "https",
		"X-Consumer-ID", "admin", "X-Forwarded-Client-Cert", "Hash=x",
		// Naming a header the gateway adds in Connection must not delete it (hop-by-hop trick).
		"Connection", "X-Forwarded-For, X-Request-ID")
	readBody(t, resp)
	checks := map[string]string{
		"X-Seen-X-Forwarded-For":         "127.0.0.1",
		"X-Seen-X-Real-Ip":               "",
		"X-Seen-X-Forwarded-Proto":       "http",
		"X-Seen-X-Consumer-Id":           "",
		"X-Seen-X-Forwarded-Host":        "", // set from the client's Host below
		"X-Seen-X-Forwarded-Client-Cert": "",
	}
	for h, want := range checks {
		got := strings.Join(resp.Header.Values(h), ",")
		if h == "X-Seen-X-Forwarded-Host" {
			if strings.Contains(got, "evil.test") {
				t.Errorf("%s = %q: forged value reached the upstream", h, got)
			}
			continue
		}
		if got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if f := resp.Header.Get("X-Seen-Forwarded"); strings.Contains(f, "1.2.3.4") {
		t.Errorf("forged Forwarded reached the upstream: %q", f)
	}
	if id := resp.Header.Get("X-Seen-X-Request-Id"); id == "forged-id" || id == "" {
		t.Errorf("X-Request-ID upstream %q: an untrusted peer's id must be replaced", id)
	}
}

// TestPathNormalizationVectors replays the classic bypasses with raw sockets: whatever the
// spelling, /public/../admin must reach the admin route (so its policies apply) or be refused,
// never be served by the public route.
func TestPathNormalizationVectors(t *testing.T) {
	x := routingGateway(t)
	addr := x.addr("public")
	cases := []struct {
		name, target string
		status       int
		backend      string
		seenPath     string
	}{
		{"dot-dot", "/public/../admin/x", 200, "admin", "/admin/x"},
		{"encoded dot-dot", "/public/%2e%2e/admin/x", 200, "admin", "/admin/x"},
		{"mixed-case encoded dot-dot", "/public/%2E%2e/admin/x", 200, "admin", "/admin/x"},
		{"double slash", "//admin//x", 200, "admin", "/admin/x"},
		{"encoded slash", "/public/..%2Fadmin/x", 400, "", ""},
		{"encoded backslash", "/public/..%5Cadmin/x", 400, "", ""},
		{"semicolon dot-dot (Tomcat bypass)", "/public/..;/admin/x", 400, "", ""},
		{"semicolon literal", "/public/a;b", 200, "app", "/public/a;b"},
		{"backslash", "/public/..\\admin/x", 400, "", ""},
		{"NUL", "/public/%00/x", 400, "", ""},
		{"unreserved decoded", "/public/%7Euser", 200, "app", "/public/~user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body, _ := raw(t, addr, "GET "+c.target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, c.status, body)
			}
			if c.backend != "" && resp.Header.Get("X-Backend") != c.backend {
				t.Errorf("served by %q, want %q", resp.Header.Get("X-Backend"), c.backend)
			}
			if c.seenPath != "" && resp.Header.Get("X-Seen-Path") != c.seenPath {
				t.Errorf("upstream saw %q, want %q", resp.Header.Get("X-Seen-Path"), c.seenPath)
			}
		})
	}
}

// TestAmbiguousFramingRefused is the classic CL.TE smuggling attempt: the gateway must answer
// 400, close the connection, and never serve the smuggled request.
func TestAmbiguousFramingRefused(t *testing.T) {
	x := routingGateway(t)
	smuggle := "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\r\nGET /admin/secret HTTP/1.1\r\nHost: x\r\n\r\n"
	resp, body, closed := raw(t, x.addr("public"), smuggle)
	if resp.StatusCode != 400 {
		t.Fatalf("status %d (body %q), want 400", resp.StatusCode, body)
	}
	if !closed {
		t.Fatal("connection stayed open after an ambiguous request (RFC 9112 §6.1)")
	}
	for _, c := range []struct{ name, req string }{
		{"obs-fold", "GET /public/x HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
		{"duplicate content-length", "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na"},
	} {
		resp, body, closed := raw(t, x.addr("public"), c.req)
		if resp.StatusCode != 400 || !closed {
			t.Errorf("%s: status %d closed %v (body %q), want 400 and closed", c.name, resp.StatusCode, closed, body)
		}
	}
}

func TestConnectAndTraceRefused(t *testing.T) {
	x := routingGateway(t)
	for _, req := range []string{
		"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
		"TRACE /public/x HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		resp, body, _ := raw(t, x.addr("public"), req)
		if resp.StatusCode != 405 {
			t.Errorf("%q: status %d (body %q), want 405", strings.Fields(req)[0], resp.StatusCode, body)
		}
	}
}

func TestH2CUpgradeNeverHonored(t *testing.T) {
	x := routingGateway(t)
	resp, _, _ := raw(t, x.addr("public"), "GET /public/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatal("h2c upgrade was honored: later requests would tunnel past routing")
	}
	if got := resp.Header.Get("X-Seen-Upgrade"); got != "" {
		t.Fatalf("upstream saw Upgrade %q", got)
	}
	if got := resp.Header.Get("X-Seen-Http2-Settings"); got != "" {
		t.Fatalf("upstream saw HTTP2-Settings %q", got)
	}
}

var _ = net.Dial
