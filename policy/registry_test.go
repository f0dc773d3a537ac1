package policy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type echoConfig struct {
	Header string `json:"header"`
}

func (c *echoConfig) Validate() error {
	if c.Header == "" {
		return Errorf(0, "", "header is required")
	}
	return nil
}

func init() {
	Register("registry_test_echo", PhaseRange{Default: Transform, Min: Edge, Max: Transform},
		func(bc BuildContext, c *echoConfig) (Policy, error) {
			return Func(func(next Handler) Handler {
				return HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
					w.Header().Set(c.Header, bc.ID)
					return next.ServeHTTP(w, r)
				})
			}), nil
		})
}

func TestRegisterDecodesStrictlyAndValidates(t *testing.T) {
	k, ok := Lookup("registry_test_echo")
	if !ok || k.Phases.Default != Transform {
		t.Fatal("kind not registered")
	}
	if err := k.Check([]byte(`{"header":"X-A","extra":1}`)); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("unknown field accepted: %v", err)
	}
	if err := k.Check([]byte(`{}`)); err == nil || !strings.Contains(err.Error(), "header is required") {
		t.Fatalf("Validate not run: %v", err)
	}
	p, err := k.Build(BuildContext{ID: "shared-echo"}, []byte(`{"header":"X-A"}`))
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h := p.Wrap(HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil }))
	if err := h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil)); err != nil || rec.Header().Get("X-A") != "shared-echo" {
		t.Fatalf("built policy: %v %v", err, rec.Header())
	}
}

func TestRegisterRejectsProgrammingErrors(t *testing.T) {
	for name, f := range map[string]func(){
		"duplicate": func() {
			Register("registry_test_echo", At(Edge), func(BuildContext, *echoConfig) (Policy, error) { return nil, nil })
		},
		"default outside range": func() {
			Register("registry_test_bad", PhaseRange{Default: Cache, Min: Edge, Max: Authn}, func(BuildContext, *echoConfig) (Policy, error) { return nil, nil })
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Register did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestPhases(t *testing.T) {
	for _, name := range []string{"edge", "WAF", "authn", "authz", "limit", "validate", "transform", "cache"} {
		p, err := ParsePhase(name)
		if err != nil || !strings.EqualFold(p.String(), name) {
			t.Errorf("ParsePhase(%q) = %v, %v", name, p, err)
		}
	}
	if _, err := ParsePhase("later"); err == nil {
		t.Error("unknown phase accepted")
	}
	if !(Edge < WAF && WAF < Authn && Authn < Authz && Authz < Limit && Limit < Validate && Validate < Transform && Transform < Cache) {
		t.Error("phases out of order")
	}
}
