package config

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const bcryptHash = "$2y$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"

func TestConsumersValid(t *testing.T) {
	key := "acme-key-from-the-environment-0123"
	t.Setenv("LIMEN_TEST_ACME_KEY", key)
	sum := sha256.Sum256([]byte("other"))
	doc := `consumers:
  - name: acme
    groups: [partners, eu]
    plan: pro
    metadata: { tier: gold }
    credentials:
      api_keys:
        - { id: k1, sha256: "` + hex.EncodeToString(sum[:]) + `" }
        - { id: k2, key: "${LIMEN_TEST_ACME_KEY}" }
      basic_auth:
        - { username: acme, password_hash: "` + bcryptHash + `" }
  - name: guest
server:
  identity_headers: { consumer_id: X-Client }
`
	d, err := Parse("limen.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := d.Config.Consumers[0]
	if c.Credentials.APIKeys[1].Key != key || c.Plan != "pro" || c.Metadata["tier"] != "gold" {
		t.Fatalf("decoded %+v", c)
	}
	ih := d.Config.Server.IdentityHeaders
	if ih.ConsumerID != "X-Client" || ih.ConsumerGroups != "X-Consumer-Groups" {
		t.Errorf("identity headers %+v", ih)
	}
	red := string(d.Redacted())
	for _, secret := range []string{key, hex.EncodeToString(sum[:]), bcryptHash} {
		if strings.Contains(red, secret) {
			t.Errorf("redacted config shows %q", secret)
		}
	}
	if !strings.Contains(red, `"acme"`) || !strings.Contains(red, "partners") {
		t.Error("redaction removed more than secrets")
	}
	if d.Config.Consumers[0].Credentials.APIKeys[1].Key != key {
		t.Error("redaction changed the running config")
	}
}

func TestConsumersErrors(t *testing.T) {
	t.Setenv("LIMEN_TEST_SHORT_KEY", "short")
	digest := strings.Repeat("ab", 32)
	cases := []struct{ name, doc, want string }{
		{"plain key in the file", "consumers:\n  - name: a\n    credentials:\n      api_keys: [{ key: \"acme-plain-key-0123456789\" }]\n",
			`limen.yaml:4: consumers[0].credentials.api_keys[0].key: a plain secret is not accepted`},
		{"short env key", "consumers:\n  - name: a\n    credentials:\n      api_keys: [{ key: \"${LIMEN_TEST_SHORT_KEY}\" }]\n", `shorter than 16`},
		{"unset env key", "consumers:\n  - name: a\n    credentials:\n      api_keys: [{ key: \"${LIMEN_TEST_UNSET_KEY}\" }]\n", `LIMEN_TEST_UNSET_KEY is empty or unset`},
		{"bad digest", "consumers:\n  - name: a\n    credentials:\n      api_keys: [{ sha256: \"abc\" }]\n", `consumers[0].credentials.api_keys[0].sha256: want 64 lowercase hex digits`},
		{"no key", "consumers:\n  - name: a\n    credentials:\n      api_keys: [{ id: x }]\n", `needs sha256`},
		{"both", "consumers:\n  - name: a\n    credentials:\n      api_keys: [{ sha256: \"" + digest + "\", key: \"${HOME}\" }]\n", `set sha256 or key, not both`},
		{"same key twice", "consumers:\n  - name: a\n    credentials:\n      api_keys: [{ sha256: \"" + digest + "\" }]\n  - name: b\n    credentials:\n      api_keys: [{ sha256: \"" + digest + "\" }]\n",
			`the same API key is already configured at consumers[0].credentials.api_keys[0]`},
		{"duplicate consumer", "consumers:\n  - name: a\n  - name: a\n", `consumer name "a" is used twice`},
		{"no name", "consumers:\n  - groups: [x]\n", `a consumer needs a name`},
		{"bad group", "consumers:\n  - { name: a, groups: [\"a b\"] }\n", `group "a b" may contain only`},
		{"weak hash", "consumers:\n  - name: a\n    credentials:\n      basic_auth: [{ username: a, password_hash: \"{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\" }]\n", `want a bcrypt`},
		{"duplicate username", "consumers:\n  - name: a\n    credentials:\n      basic_auth: [{ username: u, password_hash: \"" + bcryptHash + "\" }]\n  - name: b\n    credentials:\n      basic_auth: [{ username: u, password_hash: \"" + bcryptHash + "\" }]\n", `username "u" is already used`},
		{"colon in username", "consumers:\n  - name: a\n    credentials:\n      basic_auth: [{ username: \"a:b\", password_hash: \"" + bcryptHash + "\" }]\n", `may not contain ':'`},
		{"unknown credential kind", "consumers:\n  - name: a\n    credentials:\n      api_key: []\n", `unknown field "api_key" (did you mean "api_keys"?)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := parseErrs(t, c.doc); !strings.Contains(got, c.want) {
				t.Errorf("errors:\n%s\nwant one containing:\n%s", got, c.want)
			}
		})
	}
}

func TestClientAuthAndCertificateCredentials(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"c.pem", "k.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := "listeners:\n  - name: l\n    addr: \":8443\"\n    tls:\n      certificates: [{ cert: c.pem, key: k.pem, client_auth: { ca: ca.pem, mode: optional } }]\n      client_auth: { ca: ca.pem }\n" +
		"consumers:\n  - name: svc\n    credentials: { certificates: [{ uri: \"spiffe://acme/svc\" }, { fingerprint: \"" + strings.Repeat("ab", 32) + "\" }] }\n"
	d, err := ParseAt(filepath.Join(dir, "limen.yaml"), []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	ca := d.Config.Listeners[0].TLS.ClientAuth.CA
	if !filepath.IsAbs(ca) || !slices.Contains(d.Files, ca) {
		t.Errorf("client CA %q is not resolved and watched (%v)", ca, d.Files)
	}
	for _, c := range []struct{ doc, want string }{
		{"listeners:\n  - name: l\n    addr: \":8443\"\n    tls: { certificates: [{ cert: c.pem, key: k.pem }], client_auth: { mode: require } }\n", "client_auth needs a ca"},
		{"listeners:\n  - name: l\n    addr: \":8443\"\n    tls: { certificates: [{ cert: c.pem, key: k.pem }], client_auth: { ca: ca.pem, mode: maybe } }\n", `mode "maybe"`},
		{"listeners:\n  - name: l\n    addr: \":8443\"\n    tls: { certificates: [{ cert: c.pem, key: k.pem }], client_auth: { ca: missing.pem } }\n", "missing.pem"},
		{"consumers:\n  - name: a\n    credentials: { certificates: [{ uri: x, dns: y }] }\n", "set exactly one of fingerprint"},
		{"consumers:\n  - name: a\n    credentials: { certificates: [{ fingerprint: \"AB\" }] }\n", "64 lowercase hex"},
		{"consumers:\n  - name: a\n    credentials: { certificates: [{ uri: x }] }\n  - name: b\n    credentials: { certificates: [{ uri: x }] }\n", "already configured"},
	} {
		_, err := ParseAt(filepath.Join(dir, "limen.yaml"), []byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.doc, err, c.want)
		}
	}
}

// TestPolicyFilesAreWatchedAndHashed: a policy's File fields join the watched files and the
// hash, so editing an htpasswd or key file reloads the policies that read it.
func TestPolicyFilesAreWatchedAndHashed(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys", "users.htpasswd")
	os.MkdirAll(filepath.Dir(keyFile), 0o700)
	os.WriteFile(keyFile, []byte("v1"), 0o600)
	doc := "routes:\n  - name: a\n    respond: {}\n    policies:\n      - test_kind: { file: keys/users.htpasswd }\n"
	d1, err := ParseAt(filepath.Join(dir, "limen.yaml"), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d1.Files, keyFile) {
		t.Fatalf("files %v lack %s", d1.Files, keyFile)
	}
	os.WriteFile(keyFile, []byte("v2"), 0o600)
	d2, err := ParseAt(filepath.Join(dir, "limen.yaml"), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if d1.Hash == d2.Hash {
		t.Error("changing a policy's file did not change the config hash: a reload would be a no-op")
	}
}

func TestSplitValidation(t *testing.T) {
	base := "upstreams:\n  a: { targets: [{ url: \"http://127.0.0.1:1\" }] }\n  b: { targets: [{ url: \"http://127.0.0.1:2\" }] }\nroutes:\n  - name: r\n    match: { path: /x }\n"
	if _, err := Parse("limen.yaml", []byte(base+"    split: { sticky: consumer, rules: [{ cookies: { beta: \"1\" }, upstream: b }], weights: [{ upstream: a, weight: 9 }, { upstream: b, weight: 1 }] }\n")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ doc, want string }{
		{"    split: { weights: [{ upstream: a, weight: 1 }] }\n    upstream: a\n", "exactly one terminal"},
		{"    split: { weights: [] }\n", "a split needs weights"},
		{"    split: { weights: [{ upstream: a, weight: 0 }] }\n", "at least one weight must be positive"},
		{"    split: { weights: [{ upstream: zz, weight: 1 }] }\n", `no upstream named "zz"`},
		{"    split: { weights: [{ upstream: a, weight: 1 }], rules: [{ upstream: b }] }\n", "needs headers or cookies"},
		{"    split: { weights: [{ upstream: a, weight: 1 }], sticky: session }\n", `sticky "session"`},
		{"    split: { weights: [{ upstream: a, weight: 1 }], sticky: \"cookie:\" }\n", "cookie needs a name"},
	} {
		if got := parseErrs(t, base+c.doc); !strings.Contains(got, c.want) {
			t.Errorf("%s: errors %s, want %q", c.doc, got, c.want)
		}
	}
}

func TestUpstreamBreakerValidation(t *testing.T) {
	base := "upstreams:\n  a:\n    targets: [{ url: \"http://127.0.0.1:1\" }]\n    circuit_breaker: "
	d, err := Parse("limen.yaml", []byte(base+"{ failure_ratio: 0.5 }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b := d.Config.Upstreams["a"].CircuitBreaker; b.MinRequests != 20 || b.OpenFor.D() != 30*time.Second || len(b.FailureStatuses) != 4 {
		t.Errorf("defaults %+v", b)
	}
	for _, c := range []struct{ doc, want string }{
		{"{ fallback: a }\n", "its own fallback"},
		{"{ fallback: z }\n", `no upstream named "z"`},
		{"{ failure_ratio: 2 }\n", "between 0 and 1"},
		{"{ failure_statuses: [42] }\n", "not an HTTP status"},
	} {
		if got := parseErrs(t, base+c.doc); !strings.Contains(got, c.want) {
			t.Errorf("%s: %s, want %q", c.doc, got, c.want)
		}
	}
}
