package authn

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/policy"
)

func TestReadAndRemove(t *testing.T) {
	t.Parallel()
	sources := []Source{{Header: "authorization", Prefix: "Bearer "}, {Query: "token"}, {Cookie: "at"}}
	for i := range sources {
		if err := sources[i].Validate(); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, target string
		hdr          map[string][]string
		value        string
		found        bool
		from         int
	}{
		{"header", "/", map[string][]string{"Authorization": {"bearer abc"}}, "abc", true, 0},
		{"another scheme is another method's", "/?token=q", map[string][]string{"Authorization": {"Basic x"}}, "q", true, 1},
		{"empty after the prefix is malformed, not skipped", "/?token=q", map[string][]string{"Authorization": {"Bearer "}}, "", true, 0},
		{"two headers are ambiguous", "/", map[string][]string{"Authorization": {"Bearer a", "Bearer b"}}, "", true, 0},
		{"query", "/?a=1&token=q&b=2", nil, "q", true, 1},
		{"query name inside another", "/?mytoken=x", nil, "", false, 0},
		{"two query values", "/?token=a&token=b", nil, "", true, 1},
		{"cookie", "/", map[string][]string{"Cookie": {"x=1; at=c"}}, "c", true, 2},
		{"nothing", "/", map[string][]string{"Cookie": {"x=1"}}, "", false, 0},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", tc.target, nil)
		for k, v := range tc.hdr {
			r.Header[k] = v
		}
		f, ok := Read(r, sources)
		if ok != tc.found || f.Value != tc.value || ok && f.Source != &sources[tc.from] {
			t.Errorf("%s: got %q %v from %v", tc.name, f.Value, ok, f.Source)
			continue
		}
		if ok {
			Remove(r, f.Source)
			if _, again := Read(r, sources[tc.from:tc.from+1]); again {
				t.Errorf("%s: credential still present after Remove", tc.name)
			}
		}
	}
	r := httptest.NewRequest("GET", "/?a=1&token=q&b=2", nil)
	Remove(r, &sources[1])
	if r.URL.Query().Get("a") != "1" || r.URL.Query().Get("b") != "2" {
		t.Errorf("Remove dropped other parameters: %s", r.URL.RawQuery)
	}
}

func TestSourceValidate(t *testing.T) {
	t.Parallel()
	for _, s := range []Source{{}, {Header: "a", Query: "b"}, {Query: "a", Prefix: "x"}} {
		if err := s.Validate(); err == nil {
			t.Errorf("%+v validated", s)
		}
	}
}

func TestSetUpstreamHeader(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Connection", "keep-alive, X-User, x-tenant")
	SetUpstreamHeader(r, "X-User", "u1")
	SetUpstreamHeader(r, "X-Tenant", "t1")
	if r.Header.Get("Connection") != "keep-alive" || r.Header.Get("X-User") != "u1" {
		t.Errorf("headers %v", r.Header)
	}
}

func TestClaimMatches(t *testing.T) {
	t.Parallel()
	claims := map[string]any{"s": "a", "n": float64(7), "f": 1.5, "b": true, "l": []any{"x", float64(2)}, "m": map[string]any{"k": "v"}}
	for _, tc := range []struct {
		path string
		want []string
		ok   bool
	}{
		{"s", []string{"a"}, true}, {"s", []string{"b"}, false}, {"n", []string{"7"}, true}, {"f", []string{"1.5"}, false},
		{"b", []string{"true"}, true}, {"l", []string{"2"}, true}, {"l", []string{"y"}, false}, {"m.k", []string{"v"}, true},
		{"m.z", nil, false}, {"s.x", nil, false}, {"m", nil, true}, {"missing", nil, false},
	} {
		if got := ClaimMatches(claims, tc.path, tc.want); got != tc.ok {
			t.Errorf("%s %v: %v", tc.path, tc.want, got)
		}
	}
}

// FuzzRead: arbitrary headers, queries and cookies never panic the credential reader, and a
// header credential is only ever read from behind its prefix.
func FuzzRead(f *testing.F) {
	f.Add("Bearer abc", "token=x", "at=y")
	f.Add("Basic abc", "token=%zz", "at")
	f.Add("bearer", "token=a&token=b", "at=1; at=2")
	f.Fuzz(func(t *testing.T, authz, query, cookie string) {
		sources := []Source{{Header: "Authorization", Prefix: "Bearer "}, {Query: "token"}, {Cookie: "at"}}
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.RawQuery = query
		r.Header["Authorization"] = []string{authz}
		r.Header["Cookie"] = []string{cookie}
		got, ok := Read(r, sources)
		if !ok || got.Source != &sources[0] || got.Value == "" {
			return
		}
		if len(authz) < 7 || !strings.EqualFold(authz[:7], "Bearer ") {
			t.Fatalf("a header credential %q was read from %q, which lacks the prefix", got.Value, authz)
		}
		Remove(r, got.Source)
	})
}

func TestClaimHeaders(t *testing.T) {
	for _, bad := range []map[string]string{{"": "sub"}, {"X User": "sub"}, {"X-User:": "sub"}, {"X(User)": "sub"}, {"X-User": ""}} {
		if err := ValidateClaimHeaders(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	m := map[string]string{"x-groups": "groups", "X-Tenant": "org.id", "X-Missing": "nope"}
	if err := ValidateClaimHeaders(m); err != nil {
		t.Fatal(err)
	}
	ch := NewClaimHeaders(m)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Groups", "admins")
	r.Header.Set("X-Missing", "spoofed")
	r.Header.Set("Connection", "X-Tenant")
	ch.Strip(r.Header)
	ch.Set(r, map[string]any{"groups": []any{"a", true, 3.0, map[string]any{}}, "org": map[string]any{"id": "acme"}})
	if got := r.Header.Get("X-Groups"); got != "a,true,3" {
		t.Errorf("X-Groups = %q", got)
	}
	if got := r.Header.Get("X-Tenant"); got != "acme" || r.Header.Get("Connection") != "" {
		t.Errorf("X-Tenant = %q, Connection = %q", got, r.Header.Get("Connection"))
	}
	if _, ok := r.Header["X-Missing"]; ok {
		t.Error("a client's copy of a claim header the token lacks reached the upstream")
	}
}

func TestAbsent(t *testing.T) {
	missing := Unauthenticated("Bearer")
	earlier := &policy.Principal{ID: "alice", Method: "api_key"}
	anon := &policy.Principal{ID: "guest", Method: "anonymous"}
	for _, tc := range []struct {
		name     string
		before   *policy.Principal
		anon     *policy.Principal
		optional bool
		want     *policy.Principal
		err      bool
	}{
		{"required", nil, nil, false, nil, true},
		{"optional", nil, nil, true, nil, false},
		{"anonymous fallback", nil, anon, false, anon, false},
		{"earlier principal stands", earlier, anon, false, earlier, false},
		{"earlier anonymous stands", anon, nil, false, anon, false},
	} {
		ex := &policy.Exchange{Principal: tc.before}
		err := Absent(ex, tc.anon, tc.optional, missing)
		if (err != nil) != tc.err || ex.Principal != tc.want {
			t.Errorf("%s: principal %v, err %v", tc.name, ex.Principal, err)
		}
	}
	if anon.Identified() || !earlier.Identified() || (*policy.Principal)(nil).Identified() {
		t.Error("Identified: an anonymous principal must not count, a real one must")
	}
}
