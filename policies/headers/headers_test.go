package headers_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	_ "github.com/limen-gateway/limen/policies/headers"
	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

func exchange() *policy.Exchange {
	return &policy.Exchange{
		Route: "users", RequestID: "req-7", ClientIP: netip.MustParseAddr("192.0.2.9"),
		Params: policy.Params{{Name: "id", Value: "42"}},
	}
}

func TestRequestHeaders(t *testing.T) {
	t.Setenv("LIMEN_HEADERS_TEST", "env-value")
	tests := []struct {
		name, config string
		in           http.Header
		principal    string
		want         http.Header // the headers next must see (X-Keep is always sent)
	}{
		{
			name:   "set constant replaces",
			config: `{"set": {"x-gateway": "limen"}}`,
			in:     http.Header{"X-Gateway": {"client", "values"}},
			want:   http.Header{"X-Gateway": {"limen"}},
		},
		{
			name:   "set templates",
			config: `{"set": {"X-Route": "{route}/{param.id}", "X-Client": "{client_ip}", "X-Req": "{request_id}", "X-Env": "{env.LIMEN_HEADERS_TEST}"}}`,
			want:   http.Header{"X-Route": {"users/42"}, "X-Client": {"192.0.2.9"}, "X-Req": {"req-7"}, "X-Env": {"env-value"}},
		},
		{
			name:   "empty render removes a client-supplied value",
			config: `{"set": {"X-Consumer": "{consumer}"}}`,
			in:     http.Header{"X-Consumer": {"admin"}},
			want:   http.Header{},
		},
		{
			name:      "consumer when authenticated",
			config:    `{"set": {"X-Consumer": "{consumer}"}}`,
			in:        http.Header{"X-Consumer": {"admin"}},
			principal: "alice",
			want:      http.Header{"X-Consumer": {"alice"}},
		},
		{
			name:   "add keeps existing values",
			config: `{"add": {"Via": "limen", "X-Trace": "{request.header.X-In}"}}`,
			in:     http.Header{"Via": {"1.1 edge"}, "X-In": {"abc"}},
			want:   http.Header{"Via": {"1.1 edge", "limen"}, "X-Trace": {"abc"}, "X-In": {"abc"}},
		},
		{
			name:   "add to absent and empty render adds nothing",
			config: `{"add": {"Via": "limen", "X-Trace": "{request.header.X-Missing}"}}`,
			want:   http.Header{"Via": {"limen"}},
		},
		{
			name:   "remove is case-insensitive and runs before add",
			config: `{"remove": ["cookie", "X-Internal"], "add": {"X-Internal-Seen": "yes"}}`,
			in:     http.Header{"Cookie": {"a=b"}, "X-Internal": {"1"}},
			want:   http.Header{"X-Internal-Seen": {"yes"}},
		},
		{
			name:   "set and add the same header",
			config: `{"set": {"X-A": "1"}, "add": {"X-A": "2"}}`,
			in:     http.Header{"X-A": {"0"}},
			want:   http.Header{"X-A": {"1", "2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := policytest.MustBuild(t, "request_headers", tt.config)
			r := httptest.NewRequest("GET", "/users/42", nil)
			for k, v := range tt.in {
				r.Header[k] = v
			}
			r.Header.Set("X-Keep", "kept")
			ex := exchange()
			if tt.principal != "" {
				ex.Principal = &policy.Principal{ID: tt.principal}
			}
			res := policytest.Serve(p, r, ex, nil)
			if res.Err != nil || !res.Reached {
				t.Fatalf("err %v, reached %v", res.Err, res.Reached)
			}
			want := tt.want.Clone()
			want.Set("X-Keep", "kept")
			if diff := cmp.Diff(want, res.Seen.Header); diff != "" {
				t.Errorf("headers next saw (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ config, want string }{
		{`{}`, "nothing to do"},
		{`null`, "nothing to do"},
		{`{"sett": {"A": "b"}}`, `unknown field "sett"`},
		{`{"set": {"A": "b"}} {}`, "unexpected data"},
		{`{"set": {"Connection": "close"}}`, "set: Connection is a hop-by-hop header"},
		{`{"add": {"transfer-encoding": "chunked"}}`, "add: Transfer-Encoding is a hop-by-hop header"},
		{`{"set": {"Upgrade": "websocket"}}`, "upgrades are allowed per route"},
		{`{"set": {"Host": "x"}}`, "rewrite.host"},
		{`{"add": {"Content-Length": "1"}}`, "Content-Length is computed by the gateway"},
		{`{"remove": ["Host"]}`, "rewrite.host"},
		{`{"remove": ["X-A", "x-a"]}`, "listed twice"},
		{`{"set": {"bad name": "x"}}`, `"bad name" is not a valid header name`},
		{`{"remove": [""]}`, "not a valid header name"},
		{`{"set": {"X-A": "a", "x-a": "b"}}`, "name the same header"},
		{`{"set": {"X-A": "a"}, "remove": ["x-a"]}`, "also listed in remove"},
		{`{"set": {"X-A": "{nope}"}}`, "set.X-A: invalid template \"{nope}\": unknown placeholder {nope}"},
		{`{"add": {"X-A": "line\nbreak"}}`, "control character"},
	}
	for _, kind := range []string{"request_headers", "response_headers"} {
		for _, tt := range tests {
			t.Run(kind+"/"+tt.config, func(t *testing.T) {
				t.Parallel()
				_, err := policytest.Build(kind, tt.config)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Build(%s) = %v, want an error containing %q", tt.config, err, tt.want)
				}
				k, _ := policy.Lookup(kind)
				if err := k.Check([]byte(tt.config)); err == nil {
					t.Errorf("Check(%s) accepted what Build refused", tt.config)
				}
			})
		}
	}
}

func TestKinds(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"request_headers", "response_headers"} {
		k, ok := policy.Lookup(kind)
		if !ok {
			t.Fatalf("%s is not registered", kind)
		}
		if want := (policy.PhaseRange{Default: policy.Transform, Min: policy.Edge, Max: policy.Transform}); k.Phases != want {
			t.Errorf("%s phases = %+v, want %+v", kind, k.Phases, want)
		}
	}
}

func TestResponseHeaders(t *testing.T) {
	const config = `{"set": {"X-Served-By": "limen", "X-Route": "{route}", "Cache-Control": "no-store"}, "add": {"Vary": "Accept"}, "remove": ["Server"]}`
	withUpstream := func(w http.ResponseWriter) {
		w.Header().Set("Server", "backend/1.0")
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Origin")
	}
	want := http.Header{"X-Served-By": {"limen"}, "X-Route": {"users"}, "Cache-Control": {"no-store"}, "Vary": {"Origin", "Accept"}}
	tests := []struct {
		name    string
		next    policy.HandlerFunc
		want    http.Header
		status  int
		wantErr bool
	}{
		{
			name: "write",
			next: func(w http.ResponseWriter, r *http.Request) error {
				withUpstream(w)
				_, err := io.WriteString(w, "body")
				return err
			},
			want: want, status: 200,
		},
		{
			name: "write header",
			next: func(w http.ResponseWriter, r *http.Request) error {
				withUpstream(w)
				w.WriteHeader(http.StatusCreated)
				w.Header().Set("X-Late", "ignored by the client")
				return nil
			},
			want: want, status: 201,
		},
		{
			name: "nothing written",
			next: func(w http.ResponseWriter, r *http.Request) error {
				withUpstream(w)
				return nil
			},
			want: want, status: 200,
		},
		{
			name: "flush commits",
			next: func(w http.ResponseWriter, r *http.Request) error {
				withUpstream(w)
				return http.NewResponseController(w).Flush()
			},
			want: want, status: 200,
		},
		{
			name: "error is left to the renderer",
			next: func(w http.ResponseWriter, r *http.Request) error {
				w.Header().Set("Server", "backend/1.0")
				return policy.Errorf(http.StatusBadGateway, "upstream_error", "bad gateway")
			},
			want: http.Header{"Server": {"backend/1.0"}}, wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := policytest.MustBuild(t, "response_headers", config)
			res := policytest.Serve(p, httptest.NewRequest("GET", "/", nil), exchange(), tt.next)
			if (res.Err != nil) != tt.wantErr {
				t.Fatalf("err = %v", res.Err)
			}
			// An error leaves the response uncommitted: compare the live header the
			// renderer would use; otherwise what was sent.
			got := res.Rec.Header()
			if !tt.wantErr {
				if res.Rec.Code != tt.status {
					t.Errorf("status = %d, want %d", res.Rec.Code, tt.status)
				}
				got = res.Rec.Result().Header
			}
			delete(got, "Content-Type")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("response headers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestResponseHeadersInformational checks that a 1xx goes out unchanged and the final response
// gets the changes.
func TestResponseHeadersInformational(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, "response_headers", `{"set": {"X-Final": "yes"}}`)
	h := p.Wrap(policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	w := &nopWriter{h: http.Header{}}
	if err := h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil)); err != nil {
		t.Fatal(err)
	}
	want := []sent{
		{103, http.Header{"Link": {"</a.css>; rel=preload"}}},
		{200, http.Header{"Link": {"</a.css>; rel=preload"}, "X-Final": {"yes"}}},
	}
	if diff := cmp.Diff(want, w.sent, cmp.AllowUnexported(sent{})); diff != "" {
		t.Errorf("sent (-want +got):\n%s", diff)
	}
}

// TestResponseHeadersStreaming drives a real server: the header (with the changes) must reach
// the client while the handler is still streaming, through http.ResponseController.
func TestResponseHeadersStreaming(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, "response_headers", `{"set": {"X-Stream": "yes"}}`)
	release := make(chan struct{})
	h := p.Wrap(policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/event-stream")
		if _, err := io.WriteString(w, "data: first\n\n"); err != nil {
			return err
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			return err
		}
		<-release
		_, err := io.WriteString(w, "data: second\n\n")
		return err
	}))
	srv := httptest.NewServer(policy.Serve(h))
	defer srv.Close()
	defer close(release)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if got := resp.Header.Get("X-Stream"); got != "yes" {
		t.Errorf("X-Stream = %q before the stream ended", got)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Errorf("first event = %q, %v", line, err)
	}
}

// TestResponseHeadersUpgrade checks that a hijacked (upgraded) connection still works through
// the wrapper and that the header is applied before the 101 goes out.
func TestResponseHeadersUpgrade(t *testing.T) {
	t.Parallel()
	p := policytest.MustBuild(t, "response_headers", `{"set": {"X-Upgraded": "yes"}}`)
	h := p.Wrap(policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Upgrade", "test")
		w.Header().Set("Connection", "Upgrade")
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return err
		}
		defer conn.Close()
		resp := &http.Response{StatusCode: http.StatusSwitchingProtocols, ProtoMajor: 1, ProtoMinor: 1, Header: w.Header()}
		if err := resp.Write(brw); err != nil {
			return err
		}
		return brw.Flush()
	}))
	srv := httptest.NewServer(policy.Serve(h))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Upgraded") != "yes" {
		t.Errorf("status %d, X-Upgraded %q", resp.StatusCode, resp.Header.Get("X-Upgraded"))
	}
}

func TestDocs(t *testing.T) {
	t.Parallel()
	policytest.CheckDocExamples(t, "../../docs/policies/request_headers.md", "request_headers")
	policytest.CheckDocExamples(t, "../../docs/policies/response_headers.md", "response_headers")
}

var errSink error

func BenchmarkRequestHeaders(b *testing.B) {
	for _, bc := range []struct{ name, config string }{
		{"const", `{"set": {"X-Gateway": "limen"}, "remove": ["X-Internal"]}`},
		{"template", `{"set": {"X-Route": "{route}", "X-Client": "{client_ip}"}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := policytest.MustBuild(b, "request_headers", bc.config)
			h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
			r := httptest.NewRequest("GET", "/", nil)
			r = r.WithContext(policy.WithExchange(r.Context(), exchange()))
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				errSink = h.ServeHTTP(w, r)
			}
		})
	}
}

func BenchmarkResponseHeaders(b *testing.B) {
	p := policytest.MustBuild(b, "response_headers", `{"set": {"X-Served-By": "limen"}, "remove": ["Server"]}`)
	h := p.Wrap(policy.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	r := httptest.NewRequest("GET", "/", nil)
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		errSink = h.ServeHTTP(w, r)
	}
}

// nopWriter discards the body and records each status with the header sent with it.
type nopWriter struct {
	h    http.Header
	sent []sent
}

type sent struct {
	code int
	h    http.Header
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(code int) {
	if w.sent != nil || code < 200 {
		w.sent = append(w.sent, sent{code, w.h.Clone()})
	}
}

// TestManyTemplates covers more dynamic values than apply's on-stack bookkeeping holds.
func TestManyTemplates(t *testing.T) {
	t.Parallel()
	set := map[string]string{}
	want := http.Header{}
	for i := range 20 {
		name := "X-H" + string(rune('a'+i))
		set[name] = "{route}-" + name
		want[name] = []string{"users-" + name}
	}
	set["X-Empty"] = "{consumer}"
	raw, _ := json.Marshal(map[string]any{"set": set, "add": map[string]string{"X-Ha": "{request_id}"}})
	want["X-Ha"] = append(want["X-Ha"], "req-7")
	p := policytest.MustBuild(t, "request_headers", string(raw))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Empty", "client")
	res := policytest.Serve(p, r, exchange(), nil)
	if diff := cmp.Diff(want, res.Seen.Header); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/request_headers.md", "request_headers")
	policytest.CheckDocExamples(t, "../../docs/policies/response_headers.md", "response_headers")
}
