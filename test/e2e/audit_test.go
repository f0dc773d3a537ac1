package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const auditConfig = `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
admin:
  addr: "{{.admin}}"
  tokens: [{ name: deploy-bot, token: "{{.token}}", scope: write }]
upstreams:
  api: { targets: [{ url: "{{.backend}}" }] }
consumers:
  - name: acme
    groups: [partners]
    credentials: { api_keys: [{ id: k1, sha256: "{{.digest}}" }] }
routes:
  - name: orders
    match: { path: "/orders" }
    upstream: api
    policies:
      - api_key: {}
      - acl: { allow: ["group:admins"] }
  - name: open
    match: { path: "/open" }
    upstream: api
    policies:
      - response_headers: { set: { X-Version: "{{.version}}" } }
logging:
  access: { output: "{{.access}}" }
  audit: { output: "{{.audit}}" }
`

type auditLine struct {
	Event, Route, Policy, Code, Principal, Path, Actor, Remote, Action, Source, Result string
	OldHash                                                                            string `json:"old_hash"`
	NewHash                                                                            string `json:"new_hash"`
	Changed                                                                            []string
	Status                                                                             int
}

func readAudit(t *testing.T, path string) []auditLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []auditLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line is not JSON: %q", sc.Text())
		}
		out = append(out, l)
	}
	return out
}

// TestAuditTrail: authentication failures, denials, admin calls and reloads land in the audit
// log, apart from the access log, and both logs keep writing after reloads.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	const key = "acme-audit-key-0123456789"
	sum := sha256.Sum256([]byte(key))
	dir := t.TempDir()
	token := strings.Repeat("d", 40)
	adminAddr := freePort(t)
	vars := map[string]any{
		"backend": backend(t, echo("api")).URL, "digest": hex.EncodeToString(sum[:]), "admin": adminAddr, "token": token,
		"access": filepath.Join(dir, "access.log"), "audit": filepath.Join(dir, "audit.log"), "version": "1",
	}
	x := start(t, auditConfig, vars)
	auditPath := vars["audit"].(string)
	c := client()
	send := func(path string, hdr ...string) int {
		req, _ := http.NewRequest("GET", x.url("public", path), nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := send("/orders?api_key=secret-in-query", "X-API-Key", "wrong-key-0123456789"); s != 401 {
		t.Fatalf("bad key: %d", s)
	}
	if s := send("/orders", "X-API-Key", key); s != 403 {
		t.Fatalf("acl: %d", s)
	}

	// A reload from the file, then a push through the admin API.
	vars["version"] = "2"
	if err := x.reload(auditConfig); err != nil {
		t.Fatal(err)
	}
	if s := send("/open"); s != 200 {
		t.Fatalf("after reload: %d", s)
	}
	base := "http://" + adminAddr
	get, _ := http.NewRequest("GET", base+"/admin/config", nil)
	get.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(get)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	vars["version"] = "3"
	put, _ := http.NewRequest("PUT", base+"/admin/config", strings.NewReader(string(render(t, auditConfig, vars))))
	put.Header.Set("Authorization", "Bearer "+token)
	put.Header.Set("Content-Type", "application/yaml")
	put.Header.Set("If-Match", resp.Header.Get("ETag"))
	if resp, err := c.Do(put); err != nil || resp.StatusCode != 200 {
		t.Fatalf("push: %v %v", err, resp)
	}
	bad, _ := http.NewRequest("GET", base+"/admin/routes", nil)
	bad.Header.Set("Authorization", "Bearer "+strings.Repeat("x", 40))
	if resp, err := c.Do(bad); err != nil || resp.StatusCode != 401 {
		t.Fatalf("bad admin token: %v %v", err, resp)
	}
	if s := send("/open"); s != 200 {
		t.Fatalf("after push: %d", s)
	}

	var lines []auditLine
	want := func(desc string, ok func(l auditLine) bool) {
		t.Helper()
		for _, l := range lines {
			if ok(l) {
				return
			}
		}
		t.Errorf("no audit line for %s in %+v", desc, lines)
	}
	eventually(t, 5*time.Second, "audit lines", func() bool {
		lines = readAudit(t, auditPath)
		n := 0
		for _, l := range lines {
			if l.Event == "admin" && l.Action == "PUT /admin/config" && l.Result == "ok" {
				n++
			}
			if l.Event == "authn_failure" && l.Route == "admin" {
				n++
			}
		}
		return n == 2
	})
	want("the bad API key", func(l auditLine) bool {
		return l.Event == "authn_failure" && l.Route == "orders" && l.Code == "api_key_invalid" && l.Path == "/orders" && l.Status == 401
	})
	want("the acl denial", func(l auditLine) bool {
		return l.Event == "authz_denied" && l.Principal == "acme" && l.Code == "forbidden" && strings.Contains(l.Policy, "acl")
	})
	want("the file reload with its diff", func(l auditLine) bool {
		return l.Event == "reload" && l.Source == "test" && l.Result == "ok" && l.OldHash != "" && l.NewHash != "" &&
			strings.Join(l.Changed, ";") == "routes/open: changed"
	})
	want("the config read", func(l auditLine) bool {
		return l.Event == "admin" && l.Action == "GET /admin/config" && l.Actor == "deploy-bot"
	})
	want("the push with its actor", func(l auditLine) bool {
		return l.Event == "admin" && l.Action == "PUT /admin/config" && l.Actor == "deploy-bot" && strings.HasPrefix(l.Remote, "127.0.0.1:") &&
			strings.Join(l.Changed, ";") == "routes/open: changed"
	})
	want("the refused admin token", func(l auditLine) bool {
		return l.Event == "authn_failure" && l.Route == "admin" && l.Result == "unauthorized"
	})
	raw, _ := os.ReadFile(auditPath)
	for _, secret := range []string{"secret-in-query", "wrong-key", token, key} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the audit log holds a secret: %q", secret)
		}
	}
	// The access log kept writing across both reloads (a replaced config once closed the
	// shared writer).
	eventually(t, 5*time.Second, "access lines after the reloads", func() bool {
		b, _ := os.ReadFile(vars["access"].(string))
		return strings.Count(string(b), `"route":"open"`) == 2
	})
}
