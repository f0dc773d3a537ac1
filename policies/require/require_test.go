package require

import (
	"net/http/httptest"
	"testing"

	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

var (
	reader = &policy.Principal{ID: "svc-a", Method: "jwt", Scopes: []string{"users:read", "openid"},
		Claims: map[string]any{"tenant": "acme", "level": float64(3), "admin": false,
			"realm_access": map[string]any{"roles": []any{"viewer", "auditor"}}}}
	partner = &policy.Principal{ID: "acme", Method: "api_key", Groups: []string{"partners", "eu"}}
	anon    = &policy.Principal{ID: "guest", Method: "anonymous"}
)

func TestRequire(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, config, method string
		p                    *policy.Principal
		status               int
		code                 string
	}{
		{"nobody", `{}`, "GET", nil, 401, "unauthenticated"},
		{"anyone authenticated", `{}`, "GET", partner, 0, ""},
		{"anonymous refused", `{}`, "GET", anon, 401, "unauthenticated"},
		{"anonymous allowed", `{"allow_anonymous": true}`, "GET", anon, 0, ""},
		{"scope held", `{"scopes": ["users:read"]}`, "GET", reader, 0, ""},
		{"scope missing", `{"scopes": ["users:read", "users:write"]}`, "GET", reader, 403, "insufficient_scope"},
		{"any scope", `{"scopes_any": ["users:write", "openid"]}`, "GET", reader, 0, ""},
		{"any scope missing", `{"scopes_any": ["users:write"]}`, "GET", reader, 403, "insufficient_scope"},
		{"group", `{"groups": ["partners"]}`, "GET", partner, 0, ""},
		{"groups all", `{"groups": ["partners", "us"]}`, "GET", partner, 403, "forbidden"},
		{"groups any", `{"groups_any": ["us", "eu"]}`, "GET", partner, 0, ""},
		{"claim", `{"claims": {"tenant": ["acme", "globex"]}}`, "GET", reader, 0, ""},
		{"claim mismatch", `{"claims": {"tenant": ["globex"]}}`, "GET", reader, 403, "forbidden"},
		{"claim absent", `{"claims": {"org": ["acme"]}}`, "GET", reader, 403, "forbidden"},
		{"nested array claim", `{"claims": {"realm_access.roles": ["auditor"]}}`, "GET", reader, 0, ""},
		{"number claim", `{"claims": {"level": ["3"]}}`, "GET", reader, 0, ""},
		{"bool claim", `{"claims": {"admin": ["true"]}}`, "GET", reader, 403, "forbidden"},
		{"claims of a key-only caller", `{"claims": {"tenant": ["acme"]}}`, "GET", partner, 403, "forbidden"},
		{"other method passes", `{"methods": ["POST", "DELETE"], "scopes": ["users:write"]}`, "GET", reader, 0, ""},
		{"listed method checked", `{"methods": ["POST"], "scopes": ["users:write"]}`, "POST", reader, 403, "insufficient_scope"},
		{"GET covers HEAD", `{"methods": ["GET"], "scopes": ["x"]}`, "HEAD", reader, 403, "insufficient_scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := policytest.MustBuild(t, "require", tc.config)
			res := policytest.Serve(p, httptest.NewRequest(tc.method, "/", nil), &policy.Exchange{Principal: tc.p}, nil)
			if tc.status == 0 {
				if res.Err != nil || !res.Reached {
					t.Fatalf("got %v, want it through", res.Err)
				}
				return
			}
			pe := policytest.PolicyError(res.Err)
			if pe == nil || pe.Status != tc.status || pe.Code != tc.code || res.Reached {
				t.Fatalf("got %v, want %d %s", res.Err, tc.status, tc.code)
			}
			if tc.status == 401 && pe.Header.Get("Www-Authenticate") == "" {
				t.Error("401 without a challenge")
			}
			if tc.code == "insufficient_scope" && pe.Header.Get("Www-Authenticate") == "" {
				t.Error("insufficient_scope without the RFC 6750 challenge")
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []string{`{"methods": ["get"]}`, `{"claims": {"x": []}}`, `{"challenge": "a\r\nb"}`, `{"scope": ["x"]}`} {
		if _, err := policytest.Build(Kind, c); err == nil {
			t.Errorf("%s: built", c)
		}
	}
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/require.md", Kind)
}
