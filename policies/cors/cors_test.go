package cors

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

const preflightVary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

func TestCORS(t *testing.T) {
	const (
		basic = `{"allow_origins": ["https://app.example.com", "http://localhost:3000"], "allow_origin_patterns": ["https://*.example.org", "http://127.0.0.1:*"], "allow_methods": ["GET", "PUT", "DELETE"], "allow_headers": ["Content-Type", "X-Api-Key"], "expose_headers": ["X-Request-ID"], "max_age": "10m"}`
		creds = `{"allow_origins": ["https://app.example.com"], "allow_credentials": true, "allow_headers": ["Authorization"]}`
		open  = `{"allow_origins": ["*"], "allow_methods": ["*"], "allow_headers": ["*"], "allow_private_network": true}`
	)
	tests := []struct {
		name, config, method string
		req                  http.Header
		next                 policy.HandlerFunc
		wantReached          bool
		wantStatus           int    // of the recorded response when no error
		wantCode             string // of the returned *policy.Error
		want                 http.Header
	}{
		{
			name: "actual allowed origin", config: basic, method: "GET",
			req:         http.Header{"Origin": {"https://app.example.com"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}, "Access-Control-Allow-Origin": {"https://app.example.com"}, "Access-Control-Expose-Headers": {"X-Request-ID"}},
		},
		{
			name: "actual origin not allowed passes without CORS headers", config: basic, method: "POST",
			req:         http.Header{"Origin": {"https://evil.example.com"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}},
		},
		{
			name: "no origin", config: basic, method: "GET",
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}},
		},
		{
			name: "two origin headers are not trusted", config: basic, method: "GET",
			req:         http.Header{"Origin": {"https://app.example.com", "https://app.example.com"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}},
		},
		{
			name: "null origin", config: open, method: "GET",
			req:         http.Header{"Origin": {"null"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}},
		},
		{
			name: "pattern matches one label", config: basic, method: "GET",
			req:         http.Header{"Origin": {"https://shop-1.example.org"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}, "Access-Control-Allow-Origin": {"https://shop-1.example.org"}, "Access-Control-Expose-Headers": {"X-Request-ID"}},
		},
		{
			name: "pattern does not match two labels", config: basic, method: "GET",
			req:         http.Header{"Origin": {"https://a.b.example.org"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}},
		},
		{
			name: "pattern does not match the apex", config: basic, method: "GET",
			req:         http.Header{"Origin": {"https://example.org"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}},
		},
		{
			name: "pattern does not match a suffix trick", config: basic, method: "GET",
			req:         http.Header{"Origin": {"https://evil.com.example.org.evil.com"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}},
		},
		{
			name: "pattern with any port", config: basic, method: "GET",
			req:         http.Header{"Origin": {"http://127.0.0.1:5173"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}, "Access-Control-Allow-Origin": {"http://127.0.0.1:5173"}, "Access-Control-Expose-Headers": {"X-Request-ID"}},
		},
		{
			name: "wildcard origin without credentials", config: open, method: "GET",
			req:         http.Header{"Origin": {"https://anything.test"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}, "Access-Control-Allow-Origin": {"*"}},
		},
		{
			name: "credentials echo the origin", config: creds, method: "GET",
			req:         http.Header{"Origin": {"https://app.example.com"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}, "Access-Control-Allow-Origin": {"https://app.example.com"}, "Access-Control-Allow-Credentials": {"true"}},
		},
		{
			name: "headers survive an inner error", config: creds, method: "GET",
			req: http.Header{"Origin": {"https://app.example.com"}},
			next: func(w http.ResponseWriter, r *http.Request) error {
				return &policy.Error{Status: 401, Code: "unauthenticated", Header: http.Header{"Www-Authenticate": {"Bearer"}}}
			},
			wantReached: true, wantCode: "unauthenticated",
			want: http.Header{"Vary": {"Origin"}, "Access-Control-Allow-Origin": {"https://app.example.com"}, "Access-Control-Allow-Credentials": {"true"}},
		},
		{
			name: "upstream Vary is kept", config: basic, method: "GET",
			req: http.Header{"Origin": {"https://app.example.com"}},
			next: func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Add("Vary", "Accept-Encoding")
				return nil
			},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin", "Accept-Encoding"}, "Access-Control-Allow-Origin": {"https://app.example.com"}, "Access-Control-Expose-Headers": {"X-Request-ID"}},
		},
		{
			name: "options without request method is an actual request", config: basic, method: "OPTIONS",
			req:         http.Header{"Origin": {"https://app.example.com"}},
			wantReached: true, wantStatus: 200,
			want: http.Header{"Vary": {"Origin"}, "Access-Control-Allow-Origin": {"https://app.example.com"}, "Access-Control-Expose-Headers": {"X-Request-ID"}},
		},
		{
			name: "preflight allowed", config: basic, method: "OPTIONS",
			req:        http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"PUT"}, "Access-Control-Request-Headers": {"content-type,x-api-key"}},
			wantStatus: 204,
			want: http.Header{
				"Vary": {preflightVary}, "Access-Control-Allow-Origin": {"https://app.example.com"},
				"Access-Control-Allow-Methods": {"GET, PUT, DELETE"}, "Access-Control-Allow-Headers": {"Content-Type, X-Api-Key"},
				"Access-Control-Max-Age": {"600"},
			},
		},
		{
			name: "preflight for a safelisted method not listed", config: `{"allow_origins": ["https://app.example.com"], "allow_methods": ["PUT"]}`, method: "OPTIONS",
			req:        http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"POST"}},
			wantStatus: 204,
			want:       http.Header{"Vary": {preflightVary}, "Access-Control-Allow-Origin": {"https://app.example.com"}, "Access-Control-Allow-Methods": {"PUT"}},
		},
		{
			name: "preflight with credentials", config: creds, method: "OPTIONS",
			req:        http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"authorization"}},
			wantStatus: 204,
			want: http.Header{
				"Vary": {preflightVary}, "Access-Control-Allow-Origin": {"https://app.example.com"}, "Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Allow-Methods": {"GET, HEAD, POST"}, "Access-Control-Allow-Headers": {"Authorization"},
			},
		},
		{
			name: "preflight wildcards reflect", config: open, method: "OPTIONS",
			req:        http.Header{"Origin": {"https://x.test"}, "Access-Control-Request-Method": {"PATCH"}, "Access-Control-Request-Headers": {"authorization, x-custom"}, "Access-Control-Request-Private-Network": {"true"}},
			wantStatus: 204,
			want: http.Header{
				"Vary": {preflightVary + ", Access-Control-Request-Private-Network"}, "Access-Control-Allow-Origin": {"*"},
				"Access-Control-Allow-Methods": {"PATCH"}, "Access-Control-Allow-Headers": {"authorization, x-custom"},
				"Access-Control-Allow-Private-Network": {"true"},
			},
		},
		{
			name: "preflight origin denied", config: basic, method: "OPTIONS",
			req:      http.Header{"Origin": {"https://evil.test"}, "Access-Control-Request-Method": {"GET"}},
			wantCode: "cors_forbidden",
			want:     http.Header{"Vary": {preflightVary}},
		},
		{
			name: "preflight method denied", config: basic, method: "OPTIONS",
			req:      http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"PATCH"}},
			wantCode: "cors_forbidden",
			want:     http.Header{"Vary": {preflightVary}},
		},
		{
			name: "preflight method case matters", config: basic, method: "OPTIONS",
			req:      http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"put"}},
			wantCode: "cors_forbidden",
			want:     http.Header{"Vary": {preflightVary}},
		},
		{
			name: "preflight header denied", config: basic, method: "OPTIONS",
			req:      http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"PUT"}, "Access-Control-Request-Headers": {"content-type, x-other"}},
			wantCode: "cors_forbidden",
			want:     http.Header{"Vary": {preflightVary}},
		},
		{
			name: "preflight header not a token", config: open, method: "OPTIONS",
			req:      http.Header{"Origin": {"https://x.test"}, "Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Headers": {"a b"}},
			wantCode: "cors_forbidden",
			want:     http.Header{"Vary": {preflightVary + ", Access-Control-Request-Private-Network"}},
		},
		{
			name: "private network not enabled", config: basic, method: "OPTIONS",
			req:        http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"GET"}, "Access-Control-Request-Private-Network": {"true"}},
			wantStatus: 204,
			want: http.Header{
				"Vary": {preflightVary}, "Access-Control-Allow-Origin": {"https://app.example.com"},
				"Access-Control-Allow-Methods": {"GET, PUT, DELETE"}, "Access-Control-Allow-Headers": {"Content-Type, X-Api-Key"},
				"Access-Control-Max-Age": {"600"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := policytest.MustBuild(t, Kind, tt.config)
			r := httptest.NewRequest(tt.method, "/", nil)
			for k, v := range tt.req {
				r.Header[k] = v
			}
			res := policytest.Serve(p, r, &policy.Exchange{Route: "r"}, tt.next)
			if res.Reached != tt.wantReached {
				t.Errorf("reached next = %v, want %v", res.Reached, tt.wantReached)
			}
			if tt.wantCode != "" {
				pe := policytest.PolicyError(res.Err)
				if pe == nil || pe.Code != tt.wantCode {
					t.Fatalf("err = %v, want code %s", res.Err, tt.wantCode)
				}
				if tt.wantCode == "cors_forbidden" && pe.Status != 403 {
					t.Errorf("status = %d", pe.Status)
				}
			} else {
				if res.Err != nil {
					t.Fatal(res.Err)
				}
				if res.Rec.Code != tt.wantStatus {
					t.Errorf("status = %d, want %d", res.Rec.Code, tt.wantStatus)
				}
			}
			got := res.Rec.Header().Clone()
			delete(got, "Content-Type")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("response headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ config, want string }{
		{`{}`, "allow_origins or allow_origin_patterns is required"},
		{`{"allow_origin": ["https://a.test"]}`, `unknown field "allow_origin"`},
		{`{"allow_origins": ["*"], "allow_credentials": true}`, `allow_origins[0]: "*" cannot be used with allow_credentials`},
		{`{"allow_origins": ["https://a.test"], "allow_methods": ["*"], "allow_credentials": true}`, `allow_methods[0]: "*" cannot be used`},
		{`{"allow_origins": ["https://a.test"], "allow_headers": ["*"], "allow_credentials": true}`, `allow_headers[0]: "*" cannot be used`},
		{`{"allow_origins": ["https://a.test"], "expose_headers": ["*"], "allow_credentials": true}`, `expose_headers[0]: "*" cannot be used`},
		{`{"allow_origins": ["null"]}`, `"null" cannot be allowed`},
		{`{"allow_origins": ["https://a.test/"]}`, `write "https://a.test"`},
		{`{"allow_origins": ["https://a.test/app"]}`, "has a path"},
		{`{"allow_origins": ["a.test"]}`, "is not an origin"},
		{`{"allow_origins": ["https://"]}`, "has no host"},
		{`{"allow_origins": ["https://u@a.test"]}`, "user information"},
		{`{"allow_origins": ["https://a.test:99999"]}`, "invalid port"},
		{`{"allow_origins": ["https://A.test"]}`, "lowercase"},
		{`{"allow_origins": ["https://a..test"]}`, "invalid host"},
		{`{"allow_origin_patterns": ["https://*.com"]}`, "two rightmost labels"},
		{`{"allow_origin_patterns": ["https://example.*"]}`, "two rightmost labels"},
		{`{"allow_origin_patterns": ["https://a*.example.com"]}`, "whole label"},
		{`{"allow_origin_patterns": ["https://example.com"]}`, "has no wildcard"},
		{`{"allow_origin_patterns": ["https://*.example.com/x"]}`, "only a host and a port"},
		{`{"allow_origin_patterns": ["*.example.com"]}`, "not an origin pattern"},
		{`{"allow_origin_patterns": ["https://*.example.com:x"]}`, "invalid port"},
		{`{"allow_origins": ["https://a.test"], "allow_methods": ["patch"]}`, `write "patch" in uppercase`},
		{`{"allow_origins": ["https://a.test"], "allow_methods": ["GE T"]}`, "not a valid method"},
		{`{"allow_origins": ["https://a.test"], "allow_headers": ["X:Y"]}`, "not a valid header name"},
		{`{"allow_origins": ["https://a.test"], "expose_headers": [""]}`, "not a valid header name"},
		{`{"allow_origins": ["https://a.test"], "max_age": 600}`, "want a duration"},
		{`{"allow_origins": ["https://a.test"], "max_age": "ten"}`, "invalid duration"},
		{`{"allow_origins": ["https://a.test"], "max_age": "-1s"}`, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.config, func(t *testing.T) {
			t.Parallel()
			_, err := policytest.Build(Kind, tt.config)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build(%s) = %v, want an error containing %q", tt.config, err, tt.want)
			}
		})
	}
}

func TestOriginNormalization(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://a.test:443":      "https://a.test",
		"http://a.test:80":        "http://a.test",
		"http://a.test:8080":      "http://a.test:8080",
		"https://[2001:db8::1]":   "https://[2001:db8::1]",
		"http://[::1]:3000":       "http://[::1]:3000",
		"chrome-extension://abcd": "chrome-extension://abcd",
	} {
		got, err := parseOrigin(in)
		if err != nil || got != want {
			t.Errorf("parseOrigin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	p := policytest.MustBuild(t, Kind, `{"allow_origins": ["https://a.test:443"], "allow_origin_patterns": ["https://*.b.test:443"]}`).(*cors)
	for _, o := range []string{"https://a.test", "https://x.b.test"} {
		if !p.allowed(o) {
			t.Errorf("%s not allowed", o)
		}
	}
}

func TestKind(t *testing.T) {
	t.Parallel()
	k, ok := policy.Lookup(Kind)
	if !ok || k.Phases != policy.At(policy.Edge) {
		t.Fatalf("cors registered = %v, phases %+v", ok, k.Phases)
	}
}

func TestDocs(t *testing.T) {
	t.Parallel()
	policytest.CheckDocExamples(t, "../../docs/policies/cors.md", Kind)
}

func BenchmarkCORS(b *testing.B) {
	p := policytest.MustBuild(b, Kind, `{"allow_origins": ["https://app.example.com"], "allow_origin_patterns": ["https://*.example.org"], "allow_methods": ["GET", "PUT"], "allow_headers": ["Content-Type"], "allow_credentials": true, "max_age": "1h"}`)
	h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	for _, bc := range []struct {
		name, method string
		hdr          http.Header
	}{
		{"no_origin", "GET", http.Header{}},
		{"actual_exact", "GET", http.Header{"Origin": {"https://app.example.com"}}},
		{"actual_pattern", "GET", http.Header{"Origin": {"https://shop.example.org"}}},
		{"actual_denied", "GET", http.Header{"Origin": {"https://evil.test"}}},
		{"preflight", "OPTIONS", http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"PUT"}, "Access-Control-Request-Headers": {"content-type"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest(bc.method, "/", nil)
			r.Header = bc.hdr
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				_ = h.ServeHTTP(w, r)
			}
		})
	}
}

type discard struct{ h http.Header }

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) Write(b []byte) (int, error) { return len(b), nil }
func (w *discard) WriteHeader(int)             {}

// FuzzOriginPattern compares the label-walking matcher with a regular expression built from the
// same pattern, and checks that parseOrigin never panics and is idempotent.
func FuzzOriginPattern(f *testing.F) {
	for _, s := range [][2]string{
		{"https://*.example.com", "https://a.example.com"},
		{"https://*.example.com", "https://a.b.example.com"},
		{"https://*.*.example.com:8443", "https://a.b.example.com:8443"},
		{"http://localhost:*", "http://localhost:3000"},
		{"http://*.localhost", "http://app.localhost"},
		{"https://api-*.example.com", "https://api-1.example.com"},
		{"https://*.example.com", "https://example.com"},
		{"https://*.example.com", "https://a.example.com:443"},
		{"https://*.example.com", "https://A.example.com"},
		{"https://*.example.com:*", "https://a.example.com:"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, origin string) {
		if norm, err := parseOrigin(origin); err == nil {
			if again, err := parseOrigin(norm); err != nil || again != norm {
				t.Fatalf("parseOrigin(%q) = %q, then %q, %v", origin, norm, again, err)
			}
		}
		p, err := compilePattern(pat)
		if err != nil {
			return
		}
		var re strings.Builder
		re.WriteString("^" + regexp.QuoteMeta(p.prefix))
		for i, l := range p.labels {
			if i > 0 {
				re.WriteString(`\.`)
			}
			if l == "" {
				re.WriteString(`[a-z0-9-]{1,63}`)
			} else {
				re.WriteString(regexp.QuoteMeta(l))
			}
		}
		switch p.port {
		case "":
		case "*":
			re.WriteString(`(:[0-9]{1,5})?`)
		default:
			re.WriteString(":" + regexp.QuoteMeta(p.port))
		}
		re.WriteString("$")
		want := regexp.MustCompile(re.String()).MatchString(origin)
		if got := p.match(origin); got != want {
			t.Fatalf("pattern %q (regexp %s) on %q: match = %v, regexp = %v", pat, re.String(), origin, got, want)
		}
	})
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/cors.md", "cors")
}
