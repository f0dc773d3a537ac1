package acl

import (
	"net/http/httptest"
	"testing"

	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

var (
	reader  = &policy.Principal{ID: "svc-a", Method: "jwt"}
	partner = &policy.Principal{ID: "acme", Method: "api_key", Groups: []string{"partners", "eu"}}
)

func TestACL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		config string
		p      *policy.Principal
		status int
	}{
		{`{"allow": ["acme"]}`, partner, 0},
		{`{"allow": ["globex"]}`, partner, 403},
		{`{"allow": ["group:partners"]}`, partner, 0},
		{`{"allow": ["group:partners"], "deny": ["acme"]}`, partner, 403},
		{`{"deny": ["group:eu"]}`, partner, 403},
		{`{"deny": ["group:us"]}`, partner, 0},
		{`{"deny": ["group:us"]}`, nil, 401},
		{`{"allow": ["svc-a"]}`, reader, 0},
	}
	for _, tc := range tests {
		p := policytest.MustBuild(t, "acl", tc.config)
		res := policytest.Serve(p, httptest.NewRequest("GET", "/", nil), &policy.Exchange{Principal: tc.p}, nil)
		pe := policytest.PolicyError(res.Err)
		switch {
		case tc.status == 0 && (res.Err != nil || !res.Reached):
			t.Errorf("%s %v: got %v, want it through", tc.config, tc.p, res.Err)
		case tc.status != 0 && (pe == nil || pe.Status != tc.status):
			t.Errorf("%s %v: got %v, want %d", tc.config, tc.p, res.Err, tc.status)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []string{`{}`, `{"allow": [""]}`, `{"deny": ["group:"]}`} {
		if _, err := policytest.Build(Kind, c); err == nil {
			t.Errorf("%s: built", c)
		}
	}
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/acl.md", Kind)
}
