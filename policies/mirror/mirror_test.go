package mirror

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hangGuard bounds waits for events that must happen, so a bug fails the test instead of
// hanging it. It is never what a test asserts.
const hangGuard = 20 * time.Second

// copyReq is what the shadow service received.
type copyReq struct {
	method, path, query, host string
	header                    http.Header
	body                      string
	contentLength             int64
}

// shadow is a loopback shadow service that records what it receives.
type shadow struct {
	*httptest.Server
	got  chan copyReq
	hits atomic.Int64
}

// newShadow starts a shadow service; answer, when set, writes the answer after the request
// was recorded.
func newShadow(t testing.TB, answer http.HandlerFunc) *shadow {
	t.Helper()
	s := &shadow{got: make(chan copyReq, 4096)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.hits.Add(1)
		s.got <- copyReq{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Host, r.Header, string(b), r.ContentLength}
		if answer != nil {
			answer(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// next waits for the next copy the shadow service received.
func (s *shadow) next(t testing.TB) copyReq {
	t.Helper()
	select {
	case c := <-s.got:
		return c
	case <-time.After(hangGuard):
		t.Fatal("the shadow service received no copy")
		return copyReq{}
	}
}

// buildPolicy builds an instance with a test pool; it is closed at cleanup (after the
// cleanups registered later, such as releasing a blocked shadow service).
func buildPolicy(t testing.TB, raw string, opts ...func(*policy.BuildContext)) *mirror {
	t.Helper()
	pool := &policytest.Pool{}
	opts = append([]func(*policy.BuildContext){func(bc *policy.BuildContext) { bc.Pool = pool }}, opts...)
	p := policytest.MustBuild(t, Kind, raw, opts...)
	t.Cleanup(func() {
		_ = p.(policy.Closer).Close()
		if pool.Len() != 0 {
			t.Errorf("the pool still holds %d objects after Close", pool.Len())
		}
	})
	return p.(*mirror)
}

// upstream is a next handler that reads the whole body, as the proxy would, and echoes it.
func upstream(got *string) policy.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		b, err := io.ReadAll(r.Body)
		*got = string(b)
		if err != nil {
			return err
		}
		if r.ContentLength >= 0 && r.ContentLength != int64(len(b)) {
			return errors.New("Content-Length does not match the body")
		}
		_, err = w.Write([]byte("ok"))
		return err
	}
}

func TestMirrorCopiesRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, base, method, target, body string
		wantPath, wantQuery              string
	}{
		{"post with body", "", "POST", "http://api.example.com/orders/7?x=1&y=%2F", `{"item":"book","qty":2}`, "/orders/7", "x=1&y=%2F"},
		{"get under a base path", "/shadow/", "GET", "http://api.example.com/files/a%20b?page=2", "", "/shadow/files/a%20b", "page=2"},
		{"base query first", "/v2?src=limen", "DELETE", "http://api.example.com/orders/7?force=true", "", "/v2/orders/7", "src=limen&force=true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newShadow(t, nil)
			m := buildPolicy(t, `{"url": "`+s.URL+tc.base+`", "headers": {"x-mirror": "true", "X-Internal-Token": ""}}`)
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := httptest.NewRequest(tc.method, tc.target, body)
			r.RemoteAddr = "192.0.2.1:5555"
			r.Header.Set("Authorization", "Bearer t")
			r.Header.Set("Content-Type", "application/json")
			r.Header.Add("X-Tenant", "a")
			r.Header.Add("X-Tenant", "b")
			r.Header.Set("X-Internal-Token", "not for the shadow")
			r.Header.Set("X-Limen-Mirror", "forged")
			r.Header.Set("Connection", "X-Hop, keep-alive")
			r.Header.Set("X-Hop", "only for this connection")
			r.Header.Set("Keep-Alive", "timeout=5")
			r.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
			ex := &policy.Exchange{ClientIP: netip.MustParseAddr("203.0.113.7"), RequestID: "req-42"}
			var up string
			res := policytest.Serve(m, r, ex, upstream(&up))
			if res.Err != nil || !res.Reached || res.Rec.Body.String() != "ok" {
				t.Fatalf("real request: %v (reached %v) %q", res.Err, res.Reached, res.Rec.Body.String())
			}
			if up != tc.body {
				t.Errorf("the upstream got body %q, want %q", up, tc.body)
			}
			if res.Seen.Header.Get("X-Internal-Token") == "" || res.Seen.Header.Get("X-Hop") == "" {
				t.Errorf("the real request's headers were changed: %v", res.Seen.Header)
			}

			c := s.next(t)
			if c.method != tc.method || c.path != tc.wantPath || c.query != tc.wantQuery {
				t.Errorf("copy %s %s?%s, want %s %s?%s", c.method, c.path, c.query, tc.method, tc.wantPath, tc.wantQuery)
			}
			if c.body != tc.body || c.contentLength != int64(len(tc.body)) {
				t.Errorf("copy body %q (Content-Length %d), want %q", c.body, c.contentLength, tc.body)
			}
			if c.host != strings.TrimPrefix(s.URL, "http://") {
				t.Errorf("copy Host %q, want the shadow service's %q", c.host, s.URL)
			}
			want := map[string]string{
				"X-Forwarded-Host":    "api.example.com",
				"X-Forwarded-Proto":   "http",
				"X-Forwarded-For":     "203.0.113.7",
				"X-Request-Id":        "req-42",
				"X-Limen-Mirror":      "1",
				"X-Mirror":            "true",
				"Authorization":       "Bearer t",
				"Content-Type":        "application/json",
				"X-Tenant":            "a|b",
				"X-Internal-Token":    "",
				"X-Hop":               "",
				"Keep-Alive":          "",
				"Proxy-Authorization": "",
				"User-Agent":          "",
			}
			for name, v := range want {
				if g := strings.Join(c.header.Values(name), "|"); g != v {
					t.Errorf("copy %s: %q, want %q", name, g, v)
				}
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if st := m.Stats(); st != (Stats{Mirrored: 1}) {
				t.Errorf("stats %+v, want one copy", st)
			}
		})
	}
}

// TestSlowMirrorAddsNoLatency: the real request completes while the copy is still held by
// the shadow service, and the client going away does not cancel the copy.
func TestSlowMirrorAddsNoLatency(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	var cancelled atomic.Bool
	s := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			cancelled.Store(true)
		case <-time.After(5 * time.Second):
		}
	})
	m := buildPolicy(t, `{"url": "`+s.URL+`", "timeout": "1m"}`)
	t.Cleanup(unblock) // runs before Close, registered earlier, which waits for the copy

	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequestWithContext(ctx, "POST", "/slow", strings.NewReader("payload"))
	var up string
	res := policytest.Serve(m, r, nil, upstream(&up))
	if res.Err != nil || res.Rec.Body.String() != "ok" || up != "payload" {
		t.Fatalf("real request: %v %q, upstream body %q", res.Err, res.Rec.Body.String(), up)
	}
	// The real request is done; the copy is still in the shadow service, which cannot answer
	// before release is closed below.
	if c := s.next(t); c.body != "payload" {
		t.Errorf("copy body %q", c.body)
	}
	cancel() // the client goes away
	if m.inflight.Load() != 1 {
		t.Errorf("%d copies in flight, want the blocked one", m.inflight.Load())
	}
	unblock()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st != (Stats{Mirrored: 1}) {
		t.Errorf("stats %+v, want one successful copy", st)
	}
	if cancelled.Load() {
		t.Error("the copy was cancelled when the client went away")
	}
}

func TestFailingMirrorNeverChangesTheResponse(t *testing.T) {
	t.Parallel()
	failing := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	hangup := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler) // the connection is closed without an answer
	})
	huge := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("x", 1<<20))) // read in part, then dropped: not a failure
	})
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()

	tests := []struct {
		name, url string
		failed    int64
	}{
		{"500", failing.URL, 3},
		{"connection refused", downURL, 3},
		{"connection closed", hangup.URL, 3},
		{"huge answer", huge.URL, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			logs := &policytest.WarnCounter{}
			m := buildPolicy(t, `{"url": "`+tc.url+`"}`, func(bc *policy.BuildContext) { bc.Logger = slog.New(logs) })
			for range 3 {
				var up string
				res := policytest.Serve(m, httptest.NewRequest("PUT", "/x", strings.NewReader("body")), nil, upstream(&up))
				if res.Err != nil || res.Rec.Code != 200 || res.Rec.Body.String() != "ok" || up != "body" {
					t.Fatalf("real request: %v %d %q, upstream body %q", res.Err, res.Rec.Code, res.Rec.Body.String(), up)
				}
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if st := m.Stats(); st.Mirrored != 3 || st.Failed != tc.failed {
				t.Errorf("stats %+v, want 3 copies, %d failed", st, tc.failed)
			}
			wantWarns := int64(0)
			if tc.failed > 0 {
				wantWarns = 1
			}
			if n := logs.Warns(); n != wantWarns {
				t.Errorf("%d warnings, want %d (one per outage)", n, wantWarns)
			}
		})
	}
}

func TestSampling(t *testing.T) {
	t.Parallel()
	tests := []struct {
		percent  string
		requests int
		lo, hi   int64
	}{
		// Binomial(2000, 0.1): mean 200, standard deviation 13.4; the bounds are 6 of them.
		{"10", 2000, 120, 280},
		{"50", 2000, 850, 1150},
		{"100", 200, 200, 200},
	}
	for _, tc := range tests {
		t.Run(tc.percent, func(t *testing.T) {
			t.Parallel()
			s := newShadow(t, nil)
			m := buildPolicy(t, `{"url": "`+s.URL+`", "percent": `+tc.percent+`, "max_concurrency": 5000}`)
			for range tc.requests {
				res := policytest.Serve(m, httptest.NewRequest("GET", "/s", nil), nil, nil)
				if res.Err != nil || !res.Reached {
					t.Fatalf("real request: %v", res.Err)
				}
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			st := m.Stats()
			if st.Mirrored < tc.lo || st.Mirrored > tc.hi {
				t.Errorf("%d of %d requests mirrored at %s%%, want %d to %d", st.Mirrored, tc.requests, tc.percent, tc.lo, tc.hi)
			}
			if st.Mirrored+st.Skipped != int64(tc.requests) || st.Dropped != 0 || st.Failed != 0 || st.SkippedBody != 0 {
				t.Errorf("stats %+v do not add up to %d requests", st, tc.requests)
			}
			if got := s.hits.Load(); got != st.Mirrored {
				t.Errorf("the shadow service got %d copies, stats say %d", got, st.Mirrored)
			}
		})
	}
}

func TestMaxConcurrencyDrops(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	s := newShadow(t, func(w http.ResponseWriter, r *http.Request) { <-release })
	m := buildPolicy(t, `{"url": "`+s.URL+`", "max_concurrency": 3}`)
	var released atomic.Bool
	t.Cleanup(func() {
		if !released.Load() {
			close(release)
		}
	})
	for range 10 {
		if res := policytest.Serve(m, httptest.NewRequest("GET", "/c", nil), nil, nil); res.Err != nil || !res.Reached {
			t.Fatalf("real request: %v", res.Err)
		}
	}
	// Slots are taken before each copy's goroutine starts and held until its answer: the
	// first three hold them all while the shadow service blocks.
	if st := m.Stats(); st.Mirrored != 3 || st.Dropped != 7 {
		t.Errorf("stats %+v, want 3 copies and 7 dropped", st)
	}
	for range 3 {
		s.next(t)
	}
	released.Store(true)
	close(release)
	// Once the copies are answered, their slots are free again.
	deadline := time.Now().Add(hangGuard)
	for m.inflight.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d slots still taken", m.inflight.Load())
		}
		time.Sleep(time.Millisecond)
	}
	policytest.Serve(m, httptest.NewRequest("GET", "/c", nil), nil, nil)
	s.next(t)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Mirrored != 4 || st.Dropped != 7 || st.Failed != 0 {
		t.Errorf("stats %+v, want 4 copies and 7 dropped", st)
	}
	// A closed instance still passes requests on, without copies.
	if res := policytest.Serve(m, httptest.NewRequest("GET", "/c", nil), nil, nil); res.Err != nil || !res.Reached {
		t.Fatalf("after Close: %v", res.Err)
	}
	if st := m.Stats(); st.Mirrored != 4 || st.Dropped != 8 {
		t.Errorf("after Close: stats %+v, want the request dropped", st)
	}
	if got := s.hits.Load(); got != 4 {
		t.Errorf("the shadow service got %d copies, want 4", got)
	}
}

// failingBody yields some bytes, then an error, like a client that goes away mid-upload.
type failingBody struct {
	data string
	err  error
}

func (b *failingBody) Read(p []byte) (int, error) {
	if b.data == "" {
		return 0, b.err
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func (b *failingBody) Close() error { return nil }

func TestBodies(t *testing.T) {
	t.Parallel()
	payload := strings.Repeat("0123456789abcdef", 64) // exactly 1KiB
	errGone := errors.New("client went away")
	tests := []struct {
		name     string
		body     string
		chunked  bool // length unknown
		fail     bool // the client's body breaks after the bytes in body
		header   string
		mirrored bool
	}{
		{"declared length", payload, false, false, "", true},
		{"empty", "", false, false, "", true},
		{"declared too large", payload + "x", false, false, "", false},
		{"unknown length", "small", true, false, "", false},
		{"broken upload", "partial", false, true, "", false},
		{"websocket upgrade", "", false, false, "websocket", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newShadow(t, nil)
			m := buildPolicy(t, `{"url": "`+s.URL+`", "max_body": "1KiB"}`)
			r := httptest.NewRequest("POST", "/upload", strings.NewReader(tc.body))
			switch {
			case tc.chunked:
				r.Body = io.NopCloser(strings.NewReader(tc.body))
				r.ContentLength = -1
			case tc.fail:
				r.Body = &failingBody{tc.body, errGone}
				r.ContentLength = 100
			}
			if tc.header != "" {
				r.Header.Set("Connection", "Upgrade")
				r.Header.Set("Upgrade", tc.header)
			}
			var up string
			res := policytest.Serve(m, r, nil, func(w http.ResponseWriter, r *http.Request) error {
				b, err := io.ReadAll(r.Body)
				up = string(b)
				if tc.fail {
					if !errors.Is(err, errGone) {
						t.Errorf("the upstream read error %v, want the client's own", err)
					}
					return nil
				}
				if r.ContentLength >= 0 && r.ContentLength != int64(len(b)) {
					t.Errorf("upstream Content-Length %d for %d bytes", r.ContentLength, len(b))
				}
				return err
			})
			if res.Err != nil || !res.Reached {
				t.Fatalf("real request: %v (reached %v)", res.Err, res.Reached)
			}
			if up != tc.body {
				t.Errorf("the upstream got %d bytes, want %d", len(up), len(tc.body))
			}
			if tc.mirrored {
				if c := s.next(t); c.body != tc.body {
					t.Errorf("the copy has %d bytes, want %d", len(c.body), len(tc.body))
				}
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			want := Stats{Mirrored: 1}
			switch {
			case tc.header != "":
				want = Stats{Skipped: 1}
			case !tc.mirrored:
				want = Stats{Skipped: 1, SkippedBody: 1}
			}
			if st := m.Stats(); st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
			if got := s.hits.Load(); got != want.Mirrored {
				t.Errorf("the shadow service got %d copies, want %d", got, want.Mirrored)
			}
		})
	}
}

// TestReplayableBody: the body the real upstream gets can be read again through GetBody, as a
// retrying transport does.
func TestReplayableBody(t *testing.T) {
	t.Parallel()
	s := newShadow(t, nil)
	m := buildPolicy(t, `{"url": "`+s.URL+`"}`)
	r := httptest.NewRequest("POST", "/retry", strings.NewReader("again"))
	res := policytest.Serve(m, r, nil, func(w http.ResponseWriter, r *http.Request) error {
		for i := range 2 {
			if r.GetBody == nil {
				return errors.New("no GetBody")
			}
			rc, err := r.GetBody()
			if err != nil {
				return err
			}
			if b, _ := io.ReadAll(rc); string(b) != "again" {
				t.Errorf("replay %d: %q", i, b)
			}
		}
		return nil
	})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	s.next(t)
}

func TestCA(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "shadow-ca.pem"), pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	inDir := func(bc *policy.BuildContext) { bc.BaseDir = dir }
	for _, tc := range []struct {
		name, extra string
		failed      int64
	}{
		{"with the CA", `, "ca": "shadow-ca.pem"`, 0},
		{"without", "", 1},
	} {
		m := buildPolicy(t, `{"url": "`+srv.URL+`"`+tc.extra+`}`, inDir)
		if res := policytest.Serve(m, httptest.NewRequest("GET", "/x", nil), nil, nil); res.Err != nil || !res.Reached {
			t.Fatalf("%s: real request %v", tc.name, res.Err)
		}
		_ = m.Close()
		if st := m.Stats(); st.Mirrored != 1 || st.Failed != tc.failed {
			t.Errorf("%s: stats %+v, want %d failed", tc.name, st, tc.failed)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("the shadow service got %d copies, want 1", hits.Load())
	}
	if _, err := policytest.Build(Kind, `{"url": "`+srv.URL+`", "ca": "missing.pem"}`, inDir); err == nil {
		t.Error("a missing CA file built")
	}
}

// TestPool: instances with the same URL, CA and timeout share one client, and the last Close
// releases it.
func TestPool(t *testing.T) {
	t.Parallel()
	pool := &policytest.Pool{}
	withPool := func(bc *policy.BuildContext) { bc.Pool = pool }
	a := policytest.MustBuild(t, Kind, `{"url": "http://127.0.0.1:1/"}`, withPool)
	b := policytest.MustBuild(t, Kind, `{"url": "http://127.0.0.1:1/", "percent": 5}`, withPool)
	c := policytest.MustBuild(t, Kind, `{"url": "http://127.0.0.1:1/", "timeout": "1s"}`, withPool)
	if pool.Len() != 2 {
		t.Fatalf("pool holds %d clients, want 2", pool.Len())
	}
	if a.(*mirror).client != b.(*mirror).client {
		t.Error("instances with the same url, ca and timeout do not share a client")
	}
	for _, p := range []policy.Policy{a, b, c} {
		_ = p.(policy.Closer).Close()
		_ = p.(policy.Closer).Close() // idempotent
	}
	if pool.Len() != 0 {
		t.Errorf("pool holds %d clients after Close", pool.Len())
	}
	// Without a pool the instance keeps a private client.
	p := policytest.MustBuild(t, Kind, `{"url": "http://127.0.0.1:1/"}`)
	_ = p.(policy.Closer).Close()
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{
		`{}`,
		`{"url": "/shadow"}`,
		`{"url": "shadow.internal:8080"}`,
		`{"url": "ftp://shadow.internal/"}`,
		`{"url": "http://user:pw@shadow.internal/"}`,
		`{"url": "http://shadow.internal/#frag"}`,
		`{"url": "http://shadow.internal/", "percent": 0}`,
		`{"url": "http://shadow.internal/", "percent": -5}`,
		`{"url": "http://shadow.internal/", "percent": 100.5}`,
		`{"url": "http://shadow.internal/", "percent": "10%"}`,
		`{"url": "http://shadow.internal/", "timeout": "0s"}`,
		`{"url": "http://shadow.internal/", "timeout": "2m"}`,
		`{"url": "http://shadow.internal/", "timeout": 2}`,
		`{"url": "http://shadow.internal/", "max_concurrency": -1}`,
		`{"url": "http://shadow.internal/", "max_concurrency": 10001}`,
		`{"url": "http://shadow.internal/", "max_body": "1GiB"}`,
		`{"url": "http://shadow.internal/", "max_body": "64kb"}`,
		`{"url": "http://shadow.internal/", "ca": "ca.pem"}`,
		`{"url": "http://shadow.internal/", "headers": {"Host": "other"}}`,
		`{"url": "http://shadow.internal/", "headers": {"connection": "close"}}`,
		`{"url": "http://shadow.internal/", "headers": {"Bad Name": "x"}}`,
		`{"url": "http://shadow.internal/", "headers": {"X-A": "a\r\nX-B: b"}}`,
		`{"url": "http://shadow.internal/", "headers": {"X-A": "1", "x-a": "2"}}`,
		`{"url": "http://shadow.internal/", "unknown": true}`,
	} {
		if p, err := policytest.Build(Kind, bad); err == nil {
			_ = p.(policy.Closer).Close()
			t.Errorf("%s: built", bad)
		}
	}
	c := Config{URL: "https://shadow.internal/"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if *c.Percent != 100 || c.Timeout.D() != 2*time.Second || c.MaxConcurrency != 64 || c.MaxBody != 64<<10 ||
		len(c.Headers) != 1 || c.Headers["X-Limen-Mirror"] != "1" {
		t.Errorf("defaults: %+v", c)
	}
	c = Config{URL: "https://shadow.internal/", Headers: map[string]string{"x-limen-mirror": "canary", "x-mirror": "true"}}
	if err := c.Validate(); err != nil || len(c.Headers) != 2 || c.Headers["X-Limen-Mirror"] != "canary" || c.Headers["X-Mirror"] != "true" {
		t.Errorf("headers %v (%v), want the marker's value replaced and X-Mirror added", c.Headers, err)
	}
}

func TestDocExamples(t *testing.T) {
	t.Parallel()
	// Building only creates clients; nothing is sent, whatever the examples' hosts.
	pool := &policytest.Pool{}
	policytest.CheckDocExamples(t, "../../docs/policies/mirror.md", Kind, func(bc *policy.BuildContext) { bc.Pool = pool })
}

// BenchmarkMirror is the cost on the real request's path: a sampled-out request, and a copied
// one (the copy itself runs in the background against a loopback shadow service).
func BenchmarkMirror(b *testing.B) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer s.Close()
	for _, bc := range []struct{ name, percent string }{{"skipped", "0.0001"}, {"copied", "100"}} {
		b.Run(bc.name, func(b *testing.B) {
			p := policytest.MustBuild(b, Kind, `{"url": "`+s.URL+`", "percent": `+bc.percent+`}`,
				func(bc *policy.BuildContext) { bc.Pool = &policytest.Pool{} })
			defer p.(policy.Closer).Close()
			h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
			ex := &policy.Exchange{ClientIP: netip.MustParseAddr("203.0.113.7"), RequestID: "req-1"}
			r := httptest.NewRequest("GET", "/orders?page=2", nil)
			r.Header.Set("Authorization", "Bearer t")
			r = r.WithContext(policy.WithExchange(r.Context(), ex))
			b.ReportAllocs()
			for b.Loop() {
				if err := h.ServeHTTP(nil, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
