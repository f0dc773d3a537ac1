package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/limen-gateway/limen/policy"
)

type testKindConfig struct {
	Value string      `json:"value"`
	File  policy.File `json:"file"`
}

func (c *testKindConfig) Validate() error {
	if c.Value == "bad" {
		return errors.New("value must not be bad")
	}
	return nil
}

func init() {
	policy.Register("test_kind", policy.PhaseRange{Default: policy.Transform, Min: policy.Edge, Max: policy.Transform},
		func(policy.BuildContext, *testKindConfig) (policy.Policy, error) {
			return policy.Func(func(n policy.Handler) policy.Handler { return n }), nil
		})
}

func parseErrs(t *testing.T, doc string) string {
	t.Helper()
	_, err := Parse("limen.yaml", []byte(doc))
	if err == nil {
		t.Fatalf("config accepted:\n%s", doc)
	}
	return err.Error()
}

func TestErrorsHavePositions(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, doc, want string }{
		{"unknown field with suggestion", "routes:\n  - name: a\n    match: { pathh: /x }\n    respond: {}\n",
			`limen.yaml:3: routes[0].match.pathh: unknown field "pathh" (did you mean "path"?)`},
		{"bad duration", "routes:\n  - name: a\n    respond: {}\n    timeout: soon\n", `limen.yaml:4: routes[0].timeout: invalid duration "soon"`},
		{"bad int", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\", weight: heavy}]\n", `limen.yaml:3: upstreams.u.targets[0].weight: want an integer`},
		{"unknown upstream", "routes:\n  - name: a\n    upstream: nope\n", `limen.yaml:3: routes[0].upstream: no upstream named "nope"`},
		{"no terminal", "routes:\n  - name: a\n", `limen.yaml:2: routes[0]: a route needs a terminal`},
		{"duplicate route", "routes:\n  - {name: a, respond: {}}\n  - {name: a, respond: {}}\n", `limen.yaml:3: routes[1].name: route name "a" is also used`},
		{"unknown kind", "routes:\n  - name: a\n    respond: {}\n    policies:\n      - corz: {}\n", `limen.yaml:5: routes[0].policies[0].corz: unknown policy kind "corz"`},
		{"kind config unknown field", "routes:\n  - name: a\n    respond: {}\n    policies:\n      - test_kind: { valeu: x }\n", `routes[0].policies[0].test_kind: unknown field "valeu"`},
		{"kind validate", "routes:\n  - name: a\n    respond: {}\n    policies:\n      - test_kind: { value: bad }\n", `value must not be bad`},
		{"phase out of range", "routes:\n  - name: a\n    respond: {}\n    policies:\n      - test_kind: {}\n        phase: cache\n", `routes[0].policies[0].phase: test_kind may run between edge and transform`},
		{"use unknown", "routes:\n  - name: a\n    respond: {}\n    policies:\n      - use: ghost\n", `limen.yaml:5: routes[0].policies[0].use: no shared policy named "ghost"`},
		{"short admin token", "admin:\n  tokens: [{name: a, token: short, scope: write}]\n", `admin.tokens[0].token: admin tokens must be at least 32 bytes`},
		{"public admin without token", "admin: { addr: \":9901\" }\n", `admin.addr: admin address ":9901" is not loopback`},
		{"target with path", "upstreams:\n  u: { targets: [{url: \"http://a:1/x\"}] }\n", `must be scheme://host:port only`},
		{"rewrite param", "upstreams:\n  u: { targets: [{url: \"http://a:1\"}] }\nroutes:\n  - {name: a, match: {path: /x}, upstream: u, rewrite: {path: \"/y/{id}\"}}\n", `{id} is not captured`},
		{"unknown balancer", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    balance: random\n", `limen.yaml:4: upstreams.u.balance: unknown balancer "random" (want round_robin, least_request, ewma or hash)`},
		{"hash without hash_on", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    balance: hash\n", `limen.yaml:4: upstreams.u.balance: balance: hash needs hash_on`},
		{"bad hash_on", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    balance: hash\n    hash_on: \"header:X User\"\n", `limen.yaml:5: upstreams.u.hash_on: hash_on "header:X User": want header:NAME`},
		{"unknown hash source", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    balance: hash\n    hash_on: query\n", `limen.yaml:5: upstreams.u.hash_on: hash_on "query"`},
		{"hash_on without hash", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    hash_on: client_ip\n", `limen.yaml:4: upstreams.u.hash_on: hash_on applies only to balance: hash (balance is round_robin)`},
		{"low balance factor", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    balance: hash\n    hash_on: path\n    hash_balance_factor: 0.5\n", `limen.yaml:6: upstreams.u.hash_balance_factor: hash_balance_factor 0.5 must be at least 1`},
		{"balance factor without hash", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    balance: ewma\n    hash_balance_factor: 2\n", `limen.yaml:5: upstreams.u.hash_balance_factor: hash_balance_factor applies only to balance: hash (balance is ewma)`},
		{"ewma_decay without ewma", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    balance: least_request\n    ewma_decay: 5s\n", `limen.yaml:5: upstreams.u.ewma_decay: ewma_decay applies only to balance: ewma`},
		{"tiny ewma_decay", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    balance: ewma\n    ewma_decay: 10us\n", `limen.yaml:5: upstreams.u.ewma_decay: ewma_decay must be at least 1ms`},
		{"bad ewma_decay", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    balance: ewma\n    ewma_decay: soon\n", `limen.yaml:5: upstreams.u.ewma_decay: invalid duration "soon"`},
		{"srv with name", "upstreams:\n  u:\n    discovery:\n      dns:\n        name: users.internal\n        srv: _http._tcp.users.internal\n", `limen.yaml:6: upstreams.u.discovery.dns.srv: srv and name are exclusive`},
		{"srv with port", "upstreams:\n  u:\n    discovery:\n      dns:\n        srv: _http._tcp.users.internal\n        port: 8080\n", `limen.yaml:6: upstreams.u.discovery.dns.port: port comes from the SRV records`},
		{"bad srv name", "upstreams:\n  u:\n    discovery:\n      dns:\n        srv: \"_http._tcp users\"\n", `limen.yaml:5: upstreams.u.discovery.dns.srv: srv "_http._tcp users" is not a DNS name`},
		{"long srv label", "upstreams:\n  u:\n    discovery:\n      dns:\n        srv: _http._tcp." + strings.Repeat("a", 64) + ".internal\n", `limen.yaml:5: upstreams.u.discovery.dns.srv: srv "_http._tcp.aaaa`},
		{"srv with targets", "upstreams:\n  u:\n    targets: [{url: \"http://a:1\"}]\n    discovery: { dns: { srv: _http._tcp.users.internal } }\n", `limen.yaml:2: upstreams.u: targets and discovery are exclusive`},
		{"srv scheme", "upstreams:\n  u:\n    discovery:\n      dns:\n        srv: _http._tcp.users.internal\n        scheme: ftp\n", `limen.yaml:6: upstreams.u.discovery.dns.scheme: scheme must be http or https`},
		{"dns without a name", "upstreams:\n  u:\n    discovery:\n      dns:\n        refresh: 5s\n", `limen.yaml:4: upstreams.u.discovery.dns: a DNS name is required: name (with port) for A/AAAA records or srv for SRV records`},
		{"dns name without port", "upstreams:\n  u:\n    discovery:\n      dns:\n        name: users.internal\n", `upstreams.u.discovery.dns.port: port must be 1-65535`},
		{"bad resolver", "upstreams:\n  u:\n    discovery:\n      dns:\n        srv: _http._tcp.users.internal\n        resolver: 10.0.0.2\n", `limen.yaml:6: upstreams.u.discovery.dns.resolver: resolver "10.0.0.2" must be host:port`},
		{"cluster with a database", "state:\n  redis: { url: \"redis://a:6379/2\", cluster: true }\n", `limen.yaml:2: state.redis.url: a Redis Cluster has only database 0`},
		{"braces in key_prefix", "state:\n  redis: { url: \"redis://a:6379\", key_prefix: \"app{1}:\" }\n", `limen.yaml:2: state.redis.key_prefix: must not contain { or }`},
		{"bad redis scheme", "state:\n  redis: { url: \"http://a:6379\" }\n", `limen.yaml:2: state.redis.url: want redis://host:port/db`},
		{"yaml syntax", "routes: [\n", `limen.yaml:1: invalid YAML`},
		{"duplicate key", "routes: []\nroutes: []\n", `limen.yaml`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := parseErrs(t, c.doc); !strings.Contains(got, c.want) {
				t.Errorf("errors:\n%s\nwant one containing:\n%s", got, c.want)
			}
		})
	}
}

func TestEveryErrorIsReported(t *testing.T) {
	t.Parallel()
	got := parseErrs(t, "routes:\n  - name: a\n    match: {pathh: /x}\n    upstream: nope\n  - name: b\n    timeout: x\n    respond: {}\n")
	if n := strings.Count(got, "\n") + 1; n < 3 {
		t.Fatalf("want at least 3 errors, got:\n%s", got)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	d, err := Parse("limen.yaml", []byte("upstreams:\n  u:\n    targets: [{url: \"http://127.0.0.1:1\"}]\n    health: {active: {}, passive: {}}\n    retries: {attempts: 1}\nroutes:\n  - {name: a, upstream: u}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := d.Config
	if len(c.Listeners) != 1 || c.Listeners[0].Addr != ":8080" || c.Listeners[0].Timeouts.ReadHeader.D().String() != "10s" {
		t.Errorf("listener defaults: %+v", c.Listeners)
	}
	u := c.Upstreams["u"]
	if u.Balance != "round_robin" || u.Targets[0].Weight != 1 || u.Health.Active.Path != "/healthz" || u.Health.Passive.MaxEjectionPercent != 50 || u.Retries.On[0] != "connect_failure" || u.Retries.MaxBody != 64<<10 {
		t.Errorf("upstream defaults: %+v", u)
	}
	if c.Routes[0].Match.Path != "/{path...}" || c.Routes[0].Timeout.D().String() != "30s" || !*c.Server.MergeSlashes {
		t.Errorf("route defaults: %+v", c.Routes[0])
	}
}

func TestBalancerDefaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, upstream string
		check          func(*Upstream) bool
	}{
		{"hash", "{targets: [{url: \"http://a:1\"}], balance: hash, hash_on: \"cookie:sid\"}",
			func(u *Upstream) bool {
				return u.HashOn == "cookie:sid" && u.HashBalanceFactor == 1.25 && u.EWMADecay == 0
			}},
		{"hash with a factor", "{targets: [{url: \"http://a:1\"}], balance: hash, hash_on: client_ip, hash_balance_factor: 2}",
			func(u *Upstream) bool { return u.HashBalanceFactor == 2 }},
		{"ewma", "{targets: [{url: \"http://a:1\"}], balance: ewma}",
			func(u *Upstream) bool { return u.EWMADecay.D() == 10*time.Second && u.HashBalanceFactor == 0 }},
		{"ewma with a decay", "{targets: [{url: \"http://a:1\"}], balance: ewma, ewma_decay: 3s}",
			func(u *Upstream) bool { return u.EWMADecay.D() == 3*time.Second }},
		{"round robin sets neither", "{targets: [{url: \"http://a:1\"}]}",
			func(u *Upstream) bool { return u.EWMADecay == 0 && u.HashBalanceFactor == 0 && u.HashOn == "" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d, err := Parse("limen.yaml", []byte("upstreams:\n  u: "+c.upstream+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if u := d.Config.Upstreams["u"]; !c.check(u) {
				t.Fatalf("defaults: %+v", u)
			}
		})
	}
}

func TestDNSDiscoveryDefaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, upstream string
		want           DNSDiscovery
	}{
		{"srv", "{discovery: {dns: {srv: _http._tcp.users.internal}}}",
			DNSDiscovery{SRV: "_http._tcp.users.internal", Scheme: "http", Refresh: Duration(30 * time.Second)}},
		{"srv with everything", "{discovery: {dns: {srv: _https._tcp.users.internal., scheme: https, refresh: 10s, resolver: \"127.0.0.1:5353\"}}}",
			DNSDiscovery{SRV: "_https._tcp.users.internal.", Scheme: "https", Refresh: Duration(10 * time.Second), Resolver: "127.0.0.1:5353"}},
		{"srv without underscores (consul)", "{discovery: {dns: {srv: users.service.consul}}}",
			DNSDiscovery{SRV: "users.service.consul", Scheme: "http", Refresh: Duration(30 * time.Second)}},
		{"a/aaaa", "{discovery: {dns: {name: users.internal, port: 9001}}}",
			DNSDiscovery{Name: "users.internal", Port: 9001, Scheme: "http", Refresh: Duration(30 * time.Second)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d, err := Parse("limen.yaml", []byte("upstreams:\n  u: "+c.upstream+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if got := *d.Config.Upstreams["u"].Discovery.DNS; got != c.want {
				t.Fatalf("dns %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestPolicySpecForms(t *testing.T) {
	t.Parallel()
	d, err := Parse("limen.yaml", []byte("policies:\n  shared: {test_kind: {value: x}, phase: edge}\nroutes:\n  - name: a\n    respond: {}\n    policies:\n      - use: shared\n      - test_kind: {value: y}\n        id: mine\n"))
	if err != nil {
		t.Fatal(err)
	}
	ps := d.Config.Routes[0].Policies
	if ps[0].Use != "shared" || ps[1].Kind != "test_kind" || ps[1].ID != "mine" || string(ps[1].Config) != `{"value":"y"}` {
		t.Fatalf("specs: %+v %+v", ps[0], ps[1])
	}
	if d.Config.Policies["shared"].Phase != "edge" {
		t.Fatal("shared phase lost")
	}
}

func TestHashAndFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("one"), 0o600)
	doc := "upstreams:\n  u: {targets: [{url: \"https://a:1\"}], tls: {ca: ca.pem}}\nroutes:\n  - {name: a, upstream: u}\n"
	reordered := "routes:\n  - {upstream: u, name: a}\nupstreams:\n  u: {tls: {ca: ca.pem}, targets: [{url: \"https://a:1\"}]}\n"
	path := filepath.Join(dir, "limen.yaml")
	os.WriteFile(path, []byte(doc), 0o600)
	a, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte(reordered), 0o600)
	b, _ := Load(path)
	if a.Hash != b.Hash {
		t.Error("key order changed the hash")
	}
	if len(a.Files) != 2 || a.Files[1] != filepath.Join(dir, "ca.pem") {
		t.Errorf("files %v", a.Files)
	}
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("two"), 0o600)
	c, _ := Load(path)
	if c.Hash == b.Hash {
		t.Error("a changed CA file did not change the hash")
	}
}

func TestDirectoryMerge(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("routes:\n  - {name: a, respond: {}}\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("routes:\n  - {name: b, match: {path: /b}, respond: {}}\nlogging: {level: debug}\n"), 0o600)
	d, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Config.Routes) != 2 || d.Config.Logging.Level != "debug" {
		t.Fatalf("merged: %+v", d.Config)
	}
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("logging: {level: info}\n"), 0o600)
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "also defined") {
		t.Fatalf("duplicate top-level struct: %v", err)
	}
}

func TestEnvAndRedaction(t *testing.T) {
	tok := strings.Repeat("s", 40)
	t.Setenv("LIMEN_TEST_TOKEN", tok)
	d, err := Parse("limen.yaml", []byte("admin:\n  tokens: [{name: ci, token: \"${LIMEN_TEST_TOKEN}\", scope: write}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Config.Admin.Tokens[0].Token != tok {
		t.Fatal("env not expanded")
	}
	red := d.Redacted()
	if strings.Contains(string(red), tok) || !json.Valid(red) {
		t.Fatalf("redacted: %s", red)
	}
	if _, err := Parse("limen.yaml", []byte("admin:\n  tokens: [{name: ci, token: \"${LIMEN_UNSET_VAR}\", scope: write}]\n")); err == nil || !strings.Contains(err.Error(), "LIMEN_UNSET_VAR") {
		t.Fatalf("unset env: %v", err)
	}
}

func TestAliasBomb(t *testing.T) {
	t.Parallel()
	doc := "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\nroutes: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
	if _, err := Parse("limen.yaml", []byte(doc)); err == nil {
		t.Fatal("alias bomb accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("routes:\n  - {name: a, respond: {}}\n")
	f.Add("upstreams:\n  u: {targets: [{url: \"http://a:1\"}]}\nroutes:\n  - {name: a, upstream: u, policies: [{test_kind: {}}]}\n")
	f.Add("listeners: [{name: x, addr: ':1', tls: {certificates: []}}]\n")
	f.Fuzz(func(t *testing.T, doc string) {
		d, err := Parse("f.yaml", []byte(doc))
		if err == nil && d.Config == nil {
			t.Fatal("no error and no config")
		}
	})
}
