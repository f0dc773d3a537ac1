package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const authConfig = `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  api: { targets: [{ url: "{{.backend}}" }] }
consumers:
  - name: acme
    groups: [partners, eu]
    plan: pro
    credentials:
      api_keys: [{ id: acme-2026-11, sha256: "{{.acmeDigest}}" }]
  - name: ops
    groups: [admins]
    credentials:
      basic_auth: [{ username: ops, password_hash: "{{.opsHash}}" }]
  - name: guest
policies:
  partner-keys: { api_key: { optional: true } }
routes:
  - name: orders
    match: { path: "/orders/{rest...}" }
    upstream: api
    policies:
      - use: partner-keys
      - basic_auth: {}
      - require: { methods: [DELETE], groups: [admins] }
      - acl: { deny: [globex] }
  - name: public
    match: { path: /catalog }
    upstream: api
    policies:
      - api_key: { anonymous: guest }
  - name: open
    match: { path: /open }
    upstream: api
`

// TestAuthEndToEnd drives consumers, api_key, basic_auth (any-of), require and acl through the
// real gateway to a real backend, and checks what the upstream sees.
func TestAuthEndToEnd(t *testing.T) {
	t.Parallel()
	const acmeKey = "acme-e2e-key-0123456789abcdef"
	sum := sha256.Sum256([]byte(acmeKey))
	opsHash, err := bcrypt.GenerateFromPassword([]byte("ops-password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	b := backend(t, echo("api"))
	x := start(t, authConfig, map[string]any{"backend": b.URL, "acmeDigest": hex.EncodeToString(sum[:]), "opsHash": string(opsHash)})
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:ops-password"))

	type want struct {
		status   int
		consumer string // X-Consumer-ID the upstream saw
	}
	tests := []struct {
		name   string
		method string
		path   string
		hdr    []string
		want   want
	}{
		{"api key", "GET", "/orders/1", []string{"X-API-Key", acmeKey}, want{200, "acme"}},
		{"basic when no key", "GET", "/orders/1", []string{"Authorization", basic}, want{200, "ops"}},
		{"neither", "GET", "/orders/1", nil, want{401, ""}},
		{"wrong key is not rescued by basic", "GET", "/orders/1", []string{"X-API-Key", "wrong-key-0123456789", "Authorization", basic}, want{401, ""}},
		{"delete needs admins", "DELETE", "/orders/1", []string{"X-API-Key", acmeKey}, want{403, ""}},
		{"admins may delete", "DELETE", "/orders/1", []string{"Authorization", basic}, want{200, "ops"}},
		{"anonymous catalog", "GET", "/catalog", nil, want{200, "guest"}},
		{"catalog with key", "GET", "/catalog", []string{"X-API-Key", acmeKey}, want{200, "acme"}},
		// A client cannot claim an identity: its copies of the identity headers are removed on
		// every route, with or without authentication.
		{"spoofed identity, open route", "GET", "/open", []string{"X-Consumer-ID", "admin", "X-Consumer-Groups", "admins", "X-Credential-Identifier", "k"}, want{200, ""}},
		{"spoofed identity, keyed route", "GET", "/orders/1", []string{"X-API-Key", acmeKey, "X-Consumer-ID", "admin", "X-Consumer_Groups", "admins"}, want{200, "acme"}},
	}
	c := client()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, x.url("public", tc.path), nil)
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header[tc.hdr[i]] = append(req.Header[tc.hdr[i]], tc.hdr[i+1])
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != tc.want.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want.status, body)
			}
			if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if resp.StatusCode >= 400 {
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("content type %q", ct)
				}
				return
			}
			if got := resp.Header.Get("X-Seen-X-Consumer-Id"); got != tc.want.consumer {
				t.Errorf("upstream saw X-Consumer-ID %q, want %q", got, tc.want.consumer)
			}
			for _, h := range []string{"X-Seen-X-Api-Key", "X-Seen-Authorization"} {
				if resp.Header.Get(h) != "" {
					t.Errorf("the credential reached the upstream (%s)", h)
				}
			}
			if strings.Contains(resp.Header.Get("X-Seen-X-Consumer-Groups"), "admins") && tc.want.consumer != "ops" {
				t.Errorf("spoofed groups reached the upstream: %q", resp.Header.Get("X-Seen-X-Consumer-Groups"))
			}
			switch tc.want.consumer {
			case "acme":
				if resp.Header.Get("X-Seen-X-Consumer-Groups") != "partners,eu" || resp.Header.Get("X-Seen-X-Consumer-Plan") != "pro" ||
					resp.Header.Get("X-Seen-X-Credential-Identifier") != "acme-2026-11" {
					t.Errorf("identity headers: %v", resp.Header)
				}
			case "guest":
				if resp.Header.Get("X-Seen-X-Anonymous-Consumer") != "true" {
					t.Error("anonymous consumer not marked")
				}
			}
		})
	}
}

// TestHtpasswdEditReloads: editing a file a policy references (not the config) reloads it.
func TestHtpasswdEditReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "users.htpasswd")
	write := func(pw string) {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		tmp := file + ".tmp"
		os.WriteFile(tmp, []byte("ops:"+string(h)+"\n"), 0o600)
		os.Rename(tmp, file)
	}
	write("first-password")
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
routes:
  - name: tools
    match: { path: /tools }
    respond: { body: "ok" }
    policies: [{ basic_auth: { htpasswd: "{{.file}}" } }]
`, map[string]any{"file": file})
	status := func(pw string) int {
		req, _ := http.NewRequest("GET", x.url("public", "/tools"), nil)
		req.SetBasicAuth("ops", pw)
		resp, err := client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readBody(t, resp)
		return resp.StatusCode
	}
	if s := status("first-password"); s != 200 {
		t.Fatalf("first password: %d", s)
	}
	write("second-password")
	eventually(t, 5*time.Second, "the edited htpasswd to take effect", func() bool { return status("second-password") == 200 })
	if s := status("first-password"); s != 401 {
		t.Errorf("the old password still works after the edit: %d", s)
	}
}
