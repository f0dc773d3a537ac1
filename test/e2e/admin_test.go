package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

const adminConfig = `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
admin:
  addr: "{{.admin}}"
  tokens:
    - { name: ci, token: "{{.token}}", scope: write }
upstreams:
  app: { targets: [{ url: "{{.app}}" }] }
policies:
  edge-cors: { cors: { allow_origins: ["https://app.example.com"] } }
routes:
  - name: app
    match: { path: "/{p...}" }
    upstream: app
    policies:
      - request_headers: { set: { X-A: a } }
      - ip_filter: { deny: [203.0.113.0/24] }
      - use: edge-cors
`

func TestAdminAPI(t *testing.T) {
	app := backend(t, echo("app"))
	token := strings.Repeat("t", 40)
	adminAddr := freePort(t)
	x := start(t, adminConfig, map[string]any{"app": app.URL, "admin": adminAddr, "token": token})
	base := "http://" + adminAddr
	do := func(method, path, body string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			if hdr[i] == "Host" {
				req.Host = hdr[i+1]
				continue
			}
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	auth := "Bearer " + token

	// The effective chain is in phase order, whatever the YAML order.
	resp, body := do("GET", "/admin/routes", "", "Authorization", auth)
	if resp.StatusCode != 200 {
		t.Fatalf("routes: %d %s", resp.StatusCode, body)
	}
	var routes []struct {
		Name  string
		Chain []struct{ ID, Kind, Phase string }
	}
	if err := json.Unmarshal([]byte(body), &routes); err != nil || len(routes) != 1 {
		t.Fatalf("routes body %s (%v)", body, err)
	}
	var kinds []string
	for _, s := range routes[0].Chain {
		kinds = append(kinds, s.Kind)
	}
	if got := strings.Join(kinds, ","); got != "ip_filter,cors,request_headers" && got != "cors,ip_filter,request_headers" {
		t.Errorf("chain %s: edge policies must run before transform ones", got)
	}

	if resp, _ := do("GET", "/admin/routes", ""); resp.StatusCode != 401 && resp.StatusCode != 403 {
		t.Errorf("no token: %d, want 401/403", resp.StatusCode)
	}
	if resp, _ := do("GET", "/admin/routes", "", "Authorization", auth, "Host", "evil.example"); resp.StatusCode != 403 {
		t.Errorf("foreign Host (DNS rebinding): %d, want 403", resp.StatusCode)
	}
	if resp, _ := do("GET", "/admin/upstreams", "", "Authorization", auth, "Origin", "https://evil.example"); resp.StatusCode != 403 {
		t.Errorf("foreign Origin: %d, want 403", resp.StatusCode)
	}

	// Push a new config: If-Match is required and must be the running hash.
	resp, cfgBody := do("GET", "/admin/config", "", "Authorization", auth)
	etag := strings.Trim(resp.Header.Get("ETag"), `"`)
	if resp.StatusCode != 200 || etag == "" {
		t.Fatalf("config: %d etag %q", resp.StatusCode, etag)
	}
	if strings.Contains(cfgBody, token) {
		t.Fatal("GET /admin/config leaked the admin token")
	}
	newCfg := string(render(t, strings.Replace(adminConfig, "X-A: a", "X-A: pushed", 1), x.vars))
	if resp, _ := do("PUT", "/admin/config", newCfg, "Authorization", auth, "Content-Type", "application/yaml"); resp.StatusCode != 428 {
		t.Errorf("PUT without If-Match: %d, want 428", resp.StatusCode)
	}
	if resp, _ := do("PUT", "/admin/config", newCfg, "Authorization", auth, "Content-Type", "application/yaml", "If-Match", `"stale"`); resp.StatusCode != 412 {
		t.Errorf("PUT with a stale If-Match: %d, want 412", resp.StatusCode)
	}
	bad := strings.Replace(newCfg, "upstream: app", "upstream: ghost", 1)
	if resp, body := do("POST", "/admin/config/validate", bad, "Authorization", auth, "Content-Type", "application/yaml"); resp.StatusCode != 422 || !strings.Contains(body, "ghost") {
		t.Errorf("validate of a bad config: %d %s", resp.StatusCode, body)
	}
	if resp, body := do("PUT", "/admin/config", newCfg, "Authorization", auth, "Content-Type", "application/yaml", "If-Match", `"`+etag+`"`); resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	r := get(t, x.url("public", "/x"))
	readBody(t, r)
	if r.Header.Get("X-Seen-X-A") != "pushed" {
		t.Errorf("pushed config not serving: X-A=%q", r.Header.Get("X-Seen-X-A"))
	}
	onDisk, _ := os.ReadFile(x.path)
	if !strings.Contains(string(onDisk), "pushed") {
		t.Error("pushed config was not written to the config file; the next file event would revert it")
	}

	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp, body := do("GET", p, "", "Authorization", auth); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
	_, metrics := do("GET", "/metrics", "", "Authorization", auth)
	for _, want := range []string{"limen_http_requests_total", `route="app"`, "limen_config_reloads_total"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
