package placeholder

import (
	"errors"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/policy"
)

func TestRender(t *testing.T) {
	t.Setenv("LIMEN_PLACEHOLDER_TEST", "from-env")
	r := httptest.NewRequest("PUT", "http://api.example.com:8080/users/a%2Fb?x=1&name=J%C3%B6+Doe&name=second&bad=%zz&ctl=a%0Ab&a%20b=sp", nil)
	r.URL.RawPath = "/users/a%2Fb"
	r.Header.Set("X-Tenant", "acme")
	r.Header.Add("X-Multi", "one")
	r.Header.Add("X-Multi", "two")
	r.Header["X-Evil"] = []string{"a\r\nInjected: yes"}
	ex := &policy.Exchange{
		Route:     "users",
		RequestID: "req-1",
		ClientIP:  netip.MustParseAddr("2001:db8::1"),
		Params:    policy.Params{{Name: "id", Value: "a%2Fb"}},
		Principal: &policy.Principal{ID: "alice"},
	}
	r = r.WithContext(policy.WithExchange(r.Context(), ex))
	bare := httptest.NewRequest("GET", "/", nil)

	tests := []struct {
		name, tmpl, want, bare string
		constant               bool
	}{
		{name: "empty", tmpl: "", want: "", bare: "", constant: true},
		{name: "literal", tmpl: "limen", want: "limen", bare: "limen", constant: true},
		{name: "escapes", tmpl: "{{a}} }}{{", want: "{a} }{", bare: "{a} }{", constant: true},
		{name: "env", tmpl: "v={env.LIMEN_PLACEHOLDER_TEST}", want: "v=from-env", bare: "v=from-env", constant: true},
		{name: "env unset", tmpl: "[{env.LIMEN_PLACEHOLDER_UNSET}]", want: "[]", bare: "[]", constant: true},
		{name: "header", tmpl: "t={request.header.x-tenant}", want: "t=acme", bare: "t="},
		{name: "header joined", tmpl: "{request.header.X-Multi}", want: "one, two"},
		{name: "header ctl", tmpl: "{request.header.X-Evil}", want: "a  Injected: yes"},
		{name: "host method path", tmpl: "{request.method} {request.host}{request.path}", want: "PUT api.example.com:8080/users/a%2Fb", bare: "GET example.com/"},
		{name: "query", tmpl: "{request.query.name}", want: "Jö Doe"},
		{name: "query bad escape kept", tmpl: "{request.query.bad}", want: "%zz"},
		{name: "query ctl", tmpl: "{request.query.ctl}", want: "a b"},
		{name: "query escaped key", tmpl: "{request.query.a b}", want: "sp"},
		{name: "query absent", tmpl: "<{request.query.nope}>", want: "<>", bare: "<>"},
		{name: "exchange", tmpl: "{client_ip} {route} {request_id} {param.id} {consumer}", want: "2001:db8::1 users req-1 a%2Fb alice", bare: "    "},
		{name: "param absent", tmpl: "{param.other}", want: ""},
		{name: "mixed", tmpl: "{{{route}}}", want: "{users}", bare: "{}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tp, err := Compile(tt.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(tp.Render(nil, r)); got != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
			if got := string(tp.Render(nil, bare)); tt.bare != "" || tt.constant {
				if got != tt.bare {
					t.Errorf("Render(bare) = %q, want %q", got, tt.bare)
				}
			}
			if tp.IsConst() != tt.constant {
				t.Errorf("IsConst = %v, want %v", tp.IsConst(), tt.constant)
			}
			if tt.constant && tp.Value() != tt.want {
				t.Errorf("Value = %q, want %q", tp.Value(), tt.want)
			}
			if tp.String() != tt.tmpl {
				t.Errorf("String = %q", tp.String())
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	t.Setenv("LIMEN_PLACEHOLDER_BAD", "a\nb")
	tests := []struct{ tmpl, want string }{
		{"{nope}", "unknown placeholder {nope}"},
		{"{request.header}", "unknown placeholder {request.header}"},
		{"{request.header.}", "not a valid header name"},
		{"{request.header.bad name}", "not a valid header name"},
		{"{request.query.}", "needs a parameter name"},
		{"{param.}", "needs a parameter name"},
		{"{env.}", "needs a variable name"},
		{"{env.LIMEN_PLACEHOLDER_BAD}", "not a valid header value"},
		{"{}", "empty placeholder"},
		{"{route", "unterminated placeholder"},
		{"{ro{ute}", "unterminated placeholder"},
		{"a}b", "unmatched \"}\""},
		{"a\nb", "control character"},
	}
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			_, err := Compile(tt.tmpl)
			if err == nil {
				t.Fatalf("Compile(%q) succeeded", tt.tmpl)
			}
			if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile(%q) = %v, want ErrSyntax mentioning %q", tt.tmpl, err, tt.want)
			}
		})
	}
}

func TestMustCompilePanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("MustCompile did not panic")
		}
	}()
	MustCompile("{nope}")
}

func TestRenderAllocs(t *testing.T) {
	r := httptest.NewRequest("GET", "/x?name=v", nil)
	r.Header.Set("X-Tenant", "acme")
	r = r.WithContext(policy.WithExchange(r.Context(), &policy.Exchange{
		Route: "r", ClientIP: netip.MustParseAddr("192.0.2.1"), Params: policy.Params{{Name: "id", Value: "7"}},
	}))
	for _, s := range []string{"constant", "{request.header.X-Tenant}-{client_ip}-{param.id}-{request.query.name}-{route}"} {
		tp := MustCompile(s)
		buf := make([]byte, 0, 256)
		if n := testing.AllocsPerRun(100, func() { buf = tp.Render(buf[:0], r) }); n != 0 {
			t.Errorf("Render(%q) allocates %v times", s, n)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	r := httptest.NewRequest("GET", "/x?name=v", nil)
	r.Header.Set("X-Tenant", "acme")
	r = r.WithContext(policy.WithExchange(r.Context(), &policy.Exchange{
		Route: "r", ClientIP: netip.MustParseAddr("192.0.2.1"), Params: policy.Params{{Name: "id", Value: "7"}},
	}))
	for _, bc := range []struct{ name, tmpl string }{
		{"const", "limen"},
		{"dynamic", "{request.header.X-Tenant}-{client_ip}-{param.id}-{request.query.name}-{route}"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tp := MustCompile(bc.tmpl)
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				buf = tp.Render(buf[:0], r)
			}
		})
	}
}

// FuzzCompile checks that Compile never panics, that what compiles renders without panicking
// into a valid header value, and that a constant template renders its Value.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		"", "plain", "{{x}}", "{route}", "{request.header.X-A}/{request.query.q}", "{param.id}",
		"{env.HOME}", "{client_ip}{consumer}{request_id}", "{", "}", "{{", "}}", "{a{b}", "{request.path}",
	} {
		f.Add(s)
	}
	r := httptest.NewRequest("GET", "/p?q=%0D%0Ax", nil)
	r.Header.Set("X-A", "v")
	r = r.WithContext(policy.WithExchange(r.Context(), &policy.Exchange{Route: "r", Params: policy.Params{{Name: "id", Value: "1"}}}))
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := Compile(s)
		if err != nil {
			return
		}
		out := tp.Render(nil, r)
		for _, c := range out {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				t.Fatalf("Compile(%q) rendered a control character: %q", s, out)
			}
		}
		if tp.IsConst() && string(out) != tp.Value() {
			t.Fatalf("constant %q rendered %q, Value %q", s, out, tp.Value())
		}
	})
}
