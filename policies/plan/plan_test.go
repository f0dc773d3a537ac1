package plan

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/state"
	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

var plans = map[string]state.Plan{
	"free": {Name: "free", Limits: []state.Limit{{Requests: 100, Per: time.Second, Burst: 100}}, Quotas: []state.Quota{{Requests: 3, Period: "day"}}},
	"pro":  {Name: "pro", Quotas: []state.Quota{{Requests: 1000, Period: "month"}}},
	"slow": {Name: "slow", Limits: []state.Limit{{Requests: 1, Per: time.Hour, Burst: 1}}, Quotas: []state.Quota{{Requests: 5, Period: "day"}}},
}

func withPlans(bc *policy.BuildContext) { bc.Shared = map[string]any{"plans": plans} }

func call(p policy.Policy, pr *policy.Principal) policytest.Result {
	return policytest.Serve(p, httptest.NewRequest("GET", "/", nil), &policy.Exchange{Principal: pr}, nil)
}

func TestPlanQuota(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{}`, withPlans).(*planPolicy)
	p.now = func() time.Time { return time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC) }
	free := &policy.Principal{ID: "acme", Plan: "free", Method: "api_key"}
	for i := range 3 {
		res := call(p, free)
		if res.Err != nil || res.Rec.Header().Get("RateLimit") != `"quota-day";r=`+string(rune('2'-i))+`;t=43200` {
			t.Fatalf("request %d: %v %q", i, res.Err, res.Rec.Header().Get("RateLimit"))
		}
	}
	res := call(p, free)
	pe := policytest.PolicyError(res.Err)
	if pe == nil || pe.Status != 429 || pe.Code != "quota_exceeded" || pe.Header.Get("Retry-After") != "43200" {
		t.Fatalf("4th request: %v %v", res.Err, pe)
	}
	// Another consumer on the same plan has its own quota; a pro consumer is not limited here.
	if res := call(p, &policy.Principal{ID: "globex", Plan: "free", Method: "api_key"}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := call(p, &policy.Principal{ID: "initech", Plan: "pro", Method: "api_key"}); res.Err != nil {
		t.Fatal(res.Err)
	}
}

func TestPlanRateRefusalTakesNoQuota(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, Kind, `{}`, withPlans).(*planPolicy)
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return at }
	slow := &policy.Principal{ID: "acme", Plan: "slow", Method: "api_key"}
	call(p, slow)
	for range 10 {
		if pe := policytest.PolicyError(call(p, slow).Err); pe == nil || pe.Code != "rate_limited" {
			t.Fatalf("want the hourly rate to refuse: %v", pe)
		}
	}
	at = at.Add(time.Hour)
	res := call(p, slow)
	if res.Err != nil || !strings.Contains(res.Rec.Header().Get("RateLimit"), "r=3;") {
		t.Fatalf("after an hour: %v %q (refused requests must not use the quota)", res.Err, res.Rec.Header().Get("RateLimit"))
	}
}

func TestMissingAndDefaultPlan(t *testing.T) {
	t.Parallel()
	noPlan := &policy.Principal{ID: "acme", Method: "api_key"}
	if res := call(policytest.MustBuild(t, Kind, `{}`, withPlans), noPlan); res.Err != nil {
		t.Fatalf("no plan, allow: %v", res.Err)
	}
	if pe := policytest.PolicyError(call(policytest.MustBuild(t, Kind, `{"missing_plan": "deny"}`, withPlans), nil).Err); pe == nil || pe.Code != "plan_required" {
		t.Fatalf("anonymous, deny: %v", pe)
	}
	p := policytest.MustBuild(t, Kind, `{"default_plan": "free"}`, withPlans)
	for range 3 {
		call(p, noPlan)
	}
	if pe := policytest.PolicyError(call(p, noPlan).Err); pe == nil || pe.Code != "quota_exceeded" {
		t.Fatalf("default plan not applied: %v", pe)
	}
	if _, err := policytest.Build(Kind, `{"default_plan": "gold"}`, withPlans); err == nil {
		t.Fatal("an unknown default_plan built")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{`{"backend": "disk"}`, `{"missing_plan": "maybe"}`, `{"on_error": "retry"}`, `{"backend": "redis"}`} {
		if _, err := policytest.Build(Kind, bad, withPlans); err == nil {
			t.Errorf("%s built", bad)
		}
	}
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/plan.md", Kind, withPlans)
}

// TestPlanQuotaRefusalTakesNoRate: a request the quota refuses has its rate refunded, so a
// client retrying past its quota keeps hearing quota_exceeded (retry tomorrow), never
// rate_limited (retry soon), whose Retry-After would send it back to another refusal.
func TestPlanQuotaRefusalTakesNoRate(t *testing.T) {
	t.Parallel()
	tight := map[string]state.Plan{"tight": {Name: "tight",
		Limits: []state.Limit{{Requests: 3, Per: time.Hour, Burst: 3}}, Quotas: []state.Quota{{Requests: 1, Period: "day"}}}}
	p := policytest.MustBuild(t, Kind, `{}`, func(bc *policy.BuildContext) { bc.Shared = map[string]any{"plans": tight} }).(*planPolicy)
	at := time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return at }
	acme := &policy.Principal{ID: "acme", Plan: "tight", Method: "api_key"}
	if res := call(p, acme); res.Err != nil {
		t.Fatal(res.Err)
	}
	for i := range 10 {
		if pe := policytest.PolicyError(call(p, acme).Err); pe == nil || pe.Code != "quota_exceeded" {
			t.Fatalf("retry %d past the daily quota: %v, want quota_exceeded", i, pe)
		}
	}
}
