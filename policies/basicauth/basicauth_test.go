package basicauth

import (
	"encoding/base64"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/consumer"
	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

func bcryptOf(t testing.TB, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func argonOf(pw string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(pw), salt, 1, 8*1024, 1, 32)
	return "$argon2id$v=19$m=8192,t=1,p=1$" + base64.RawStdEncoding.EncodeToString(salt) + "$" + base64.RawStdEncoding.EncodeToString(key)
}

func setup(t testing.TB) func(*policy.BuildContext) {
	dir := t.TempDir()
	htpasswd := "# ops logins\nops:" + bcryptOf(t, "ops-secret") + "\n\nalice:" + bcryptOf(t, "not-alice") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "users.htpasswd"), []byte(htpasswd), 0o600); err != nil {
		t.Fatal(err)
	}
	dirc := consumer.New([]*config.Consumer{
		{Name: "alice-co", Groups: []string{"staff"}, Credentials: config.Credentials{BasicAuth: []config.BasicCredential{
			{Username: "alice", PasswordHash: bcryptOf(t, "alice-pw")},
		}}},
		{Name: "bob-co", Credentials: config.Credentials{BasicAuth: []config.BasicCredential{
			{Username: "bob", PasswordHash: argonOf("bob-pw")},
		}}},
		{Name: "guest"},
	})
	return func(bc *policy.BuildContext) { bc.Consumers, bc.BaseDir = dirc, dir }
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	opts := setup(t)
	tests := []struct {
		name, config, auth string
		status             int
		principal          string
	}{
		{"consumer bcrypt", `{}`, basic("alice", "alice-pw"), 0, "alice-co"},
		{"consumer argon2id", `{}`, basic("bob", "bob-pw"), 0, "bob-co"},
		{"htpasswd", `{"htpasswd": "users.htpasswd"}`, basic("ops", "ops-secret"), 0, "ops"},
		{"consumer wins over htpasswd", `{"htpasswd": "users.htpasswd"}`, basic("alice", "alice-pw"), 0, "alice-co"},
		{"htpasswd password of a shadowed user", `{"htpasswd": "users.htpasswd"}`, basic("alice", "not-alice"), 401, ""},
		{"wrong password", `{}`, basic("alice", "alice-pw2"), 401, ""},
		{"unknown user", `{}`, basic("mallory", "x"), 401, ""},
		{"empty password", `{}`, basic("alice", ""), 401, ""},
		{"missing", `{}`, "", 401, ""},
		{"not base64", `{}`, "Basic !!!", 401, ""},
		{"no colon", `{}`, "Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), 401, ""},
		{"lowercase scheme", `{}`, strings.Replace(basic("alice", "alice-pw"), "Basic", "basic", 1), 0, "alice-co"},
		{"other scheme passes to the next method when optional", `{"optional": true}`, "Bearer abc", 0, ""},
		{"other scheme is missing credentials otherwise", `{}`, "Bearer abc", 401, ""},
		{"anonymous", `{"anonymous": "guest"}`, "", 0, "guest"},
		{"anonymous with bad credentials", `{"anonymous": "guest"}`, basic("alice", "bad"), 401, ""},
		{"cache off", `{"cache_ttl": "0s"}`, basic("alice", "alice-pw"), 0, "alice-co"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := policytest.MustBuild(t, Kind, tc.config, opts)
			for range 2 { // the second time through the verification cache
				r := httptest.NewRequest("GET", "/", nil)
				if tc.auth != "" {
					r.Header.Set("Authorization", tc.auth)
				}
				ex := &policy.Exchange{}
				res := policytest.Serve(p, r, ex, nil)
				if tc.status != 0 {
					pe := policytest.PolicyError(res.Err)
					if pe == nil || pe.Status != tc.status || res.Reached {
						t.Fatalf("got %v, want %d", res.Err, tc.status)
					}
					if got := pe.Header.Get("Www-Authenticate"); got != `Basic realm="limen", charset="UTF-8"` {
						t.Errorf("challenge %q", got)
					}
					continue
				}
				if res.Err != nil {
					t.Fatalf("got %v", res.Err)
				}
				got := ""
				if ex.Principal != nil {
					got = ex.Principal.ID
				}
				if got != tc.principal {
					t.Fatalf("principal %q, want %q", got, tc.principal)
				}
				if tc.principal != "" && tc.principal != "guest" && res.Seen.Header.Get("Authorization") != "" {
					t.Error("the password reached the upstream")
				}
			}
		})
	}
}

// TestBasicAuthCoalesces: concurrent checks of the same credentials hash once, and the cache
// answers later ones.
func TestBasicAuthCoalesces(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{}`, setup(t)).(*basicAuth)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if p.verify("alice", "alice-pw") == nil {
				t.Error("valid credentials refused")
			}
		}()
	}
	wg.Wait()
	if n := p.hashes.Load(); n != 1 {
		t.Errorf("20 concurrent checks of the same credentials computed %d hashes, want 1", n)
	}
	if len(p.cache) != 1 {
		t.Errorf("cache holds %d entries, want 1", len(p.cache))
	}
	for k := range p.cache {
		if strings.Contains(string(k[:]), "alice-pw") {
			t.Error("the cache key holds the password")
		}
	}
}

func TestBasicAuthCacheBounded(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{"cache_size": 3}`, setup(t)).(*basicAuth)
	for i := range 10 {
		p.remember(p.cacheKey("u", string(rune('a'+i))), &policy.Principal{ID: "u"})
	}
	if len(p.cache) > 3 {
		t.Errorf("cache grew to %d entries, bound 3", len(p.cache))
	}
}

func TestParseHash(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		"", "plain", "{SHA}abc", "$apr1$abc$def", "$1$abc$def",
		"$2y$04$short",
		"$argon2id$v=19$m=65536,t=3$c2FsdHNhbHQ$" + strings.Repeat("A", 43), // no p
		"$argon2id$v=19$m=9999999,t=3,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43),
		"$argon2id$v=18$m=8192,t=1,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43),
		"$argon2id$v=19$m=8192,t=1,p=1$c2FsdA$" + strings.Repeat("A", 43), // 4-byte salt
	} {
		if _, err := parseHash(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	h, err := parseHash(argonOf("pw"))
	if err != nil || !h.verify([]byte("pw")) || h.verify([]byte("pw2")) {
		t.Fatalf("argon2id: %v", err)
	}
}

func TestHtpasswdErrors(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"alice", "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", ":x", "a:" + bcryptOf(t, "x") + "\na:" + bcryptOf(t, "y")} {
		if _, err := parseHtpasswd(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, err := policytest.Build(Kind, `{"htpasswd": "missing.htpasswd"}`, setup(t)); err == nil {
		t.Error("a missing htpasswd file built")
	}
}

func TestDocExamples(t *testing.T) {
	opts := setup(t)
	policytest.CheckDocExamples(t, "../../docs/policies/basic_auth.md", Kind, opts)
}

// FuzzDecode: any Authorization value decodes without panicking, and what decodes names a
// usable username.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{basic("alice", "pw"), "Basic", "Basic ", "basic Og==", "Basic !!", "Bearer x", "Basic " + strings.Repeat("QUFB", 400)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		user, pass, ok := decode(v)
		if !ok {
			return
		}
		if user == "" || strings.ContainsAny(user, ":\x00\r\n") {
			t.Fatalf("decoded an unusable username %q", user)
		}
		if got := basic(user, pass); !strings.EqualFold(got[:6], v[:6]) {
			t.Fatalf("%q decoded to %q:%q", v, user, pass)
		}
	})
}
