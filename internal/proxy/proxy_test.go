package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/limen-gateway/limen/internal/refpool"
	"github.com/limen-gateway/limen/internal/upstream"
	"github.com/limen-gateway/limen/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newProxy(t *testing.T, o Options, uo upstream.Options, backends ...string) policy.Handler {
	t.Helper()
	for _, b := range backends {
		u, _ := url.Parse(b)
		uo.Targets = append(uo.Targets, upstream.TargetSpec{URL: u, Weight: 1})
	}
	uo.Name = "u"
	up, err := upstream.New(uo, &refpool.Pool{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	o.Upstream = up
	if o.Upgrades == nil {
		o.Upgrades = []string{"websocket"}
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func serve(h policy.Handler, r *http.Request) (*httptest.ResponseRecorder, error) {
	ex := &policy.Exchange{ClientIP: netip.MustParseAddr("192.0.2.7"), RequestID: "rid", Params: policy.Params{{Name: "id", Value: "42"}}}
	r = r.WithContext(policy.WithExchange(r.Context(), ex))
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, r)
	return rec, err
}

func code(err error) string {
	var pe *policy.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestRewriteAndForwardingHeaders(t *testing.T) {
	var seen *http.Request
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r }))
	defer b.Close()
	h := newProxy(t, Options{RewritePath: func(p string, ps policy.Params) string { v, _ := ps.Get("id"); return "/v1/" + v + p }}, upstream.Options{}, b.URL)
	r := httptest.NewRequest("GET", "http://api.example.com/a%20b?x=1", nil)
	r.RemoteAddr = "10.0.0.1:5555"
	r.Header.Set("Connection", "X-Forwarded-For")
	rec, err := serve(h, r)
	if err != nil {
		t.Fatal(err)
	}
	if seen.URL.EscapedPath() != "/v1/42/a%20b" || seen.URL.RawQuery != "x=1" {
		t.Errorf("upstream got %s?%s", seen.URL.EscapedPath(), seen.URL.RawQuery)
	}
	if seen.Header.Get("X-Forwarded-For") != "10.0.0.1" || seen.Header.Get("X-Request-Id") != "rid" ||
		!strings.Contains(seen.Header.Get("Forwarded"), "for=192.0.2.7") || seen.Host == "api.example.com" {
		t.Errorf("headers %v host %s", seen.Header, seen.Host)
	}
	if rec.Header().Get("X-Request-Id") != "rid" {
		t.Error("request id not returned")
	}
}

// TestIdentityHeaders: the principal goes upstream in the configured headers, set after
// hop-by-hop removal so a client's Connection header cannot delete them.
func TestIdentityHeaders(t *testing.T) {
	var seen *http.Request
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r }))
	defer b.Close()
	// Names as a user may write them: the proxy canonicalizes them once.
	ids := IdentityHeaders{ConsumerID: "x-consumer-id", ConsumerGroups: "X-Consumer-Groups", ConsumerPlan: "X-CONSUMER-PLAN", Credential: "X-Credential-Identifier", Anonymous: "x-anonymous-consumer"}
	h := newProxy(t, Options{Identity: ids}, upstream.Options{}, b.URL)
	for _, tc := range []struct {
		p    *policy.Principal
		want map[string]string
	}{
		{&policy.Principal{ID: "acme", Groups: []string{"a", "b"}, Plan: "pro", Credential: "k1", Method: "api_key"},
			map[string]string{"X-Consumer-Id": "acme", "X-Consumer-Groups": "a,b", "X-Consumer-Plan": "pro", "X-Credential-Identifier": "k1", "X-Anonymous-Consumer": ""}},
		{&policy.Principal{ID: "guest", Method: "anonymous"},
			map[string]string{"X-Consumer-Id": "guest", "X-Anonymous-Consumer": "true", "X-Consumer-Groups": ""}},
		{nil, map[string]string{"X-Consumer-Id": ""}},
	} {
		r := httptest.NewRequest("GET", "http://api.example.com/", nil)
		r.Header.Set("Connection", "X-Consumer-Id, X-Consumer-Groups")
		ex := &policy.Exchange{Principal: tc.p, RequestID: "rid"}
		r = r.WithContext(policy.WithExchange(r.Context(), ex))
		if err := h.ServeHTTP(httptest.NewRecorder(), r); err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.want {
			if got := seen.Header.Get(k); got != v {
				t.Errorf("principal %+v: %s = %q, want %q", tc.p, k, got, v)
			}
		}
	}
}

// TestForwardedChainExtended: a Forwarded chain that survived hygiene (it came from a trusted
// proxy) gets the node Limen heard from appended, not the resolved client a second time.
func TestForwardedChainExtended(t *testing.T) {
	var seen *http.Request
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r }))
	defer b.Close()
	h := newProxy(t, Options{}, upstream.Options{}, b.URL)
	r := httptest.NewRequest("GET", "http://api.example.com/", nil)
	r.RemoteAddr = "[2001:db8::1]:5555"
	r.Header.Add("Forwarded", `for=192.0.2.7;proto=https`)
	r.Header.Add("X-Forwarded-For", "192.0.2.7")
	if _, err := serve(h, r); err != nil {
		t.Fatal(err)
	}
	want := `for=192.0.2.7;proto=https, for="[2001:db8::1]";host="api.example.com";proto=http`
	if got := seen.Header.Get("Forwarded"); got != want {
		t.Errorf("Forwarded %q, want %q", got, want)
	}
	if got := seen.Header.Get("X-Forwarded-For"); got != "192.0.2.7, 2001:db8::1" {
		t.Errorf("X-Forwarded-For %q", got)
	}
}

func TestFailuresMapToProblems(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	if _, err := serve(newProxy(t, Options{Timeout: 50 * time.Millisecond}, upstream.Options{}, slow.URL), httptest.NewRequest("GET", "/", nil)); code(err) != "upstream_timeout" {
		t.Errorf("slow: %v", err)
	}
	if _, err := serve(newProxy(t, Options{}, upstream.Options{}, closedURL), httptest.NewRequest("GET", "/", nil)); code(err) != "upstream_connect_failed" {
		t.Errorf("closed: %v", err)
	}
	if _, err := serve(newProxy(t, Options{PerTryTimeout: 50 * time.Millisecond}, upstream.Options{}, slow.URL), httptest.NewRequest("GET", "/", nil)); code(err) != "upstream_timeout" {
		t.Errorf("per try: %v", err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Upgrade", "h2c")
	if _, err := serve(newProxy(t, Options{}, upstream.Options{}, slow.URL), r); code(err) != "upgrade_not_allowed" {
		t.Errorf("upgrade: %v", err)
	}
}

type brokenBody struct{}

func (brokenBody) Read([]byte) (int, error) { return 0, errors.New("malformed chunked encoding") }

func TestClientBodyErrorIs400(t *testing.T) {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer b.Close()
	h := newProxy(t, Options{}, upstream.Options{}, b.URL)
	r := httptest.NewRequest("POST", "/", io.NopCloser(brokenBody{}))
	r.ContentLength = -1
	if _, err := serve(h, r); code(err) != "bad_request_body" {
		t.Fatalf("got %v", err)
	}
	r = httptest.NewRequest("POST", "/", nil)
	rec := httptest.NewRecorder()
	r.Body = http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), 10)
	r.ContentLength = -1
	if _, err := serve(h, r); code(err) != "body_too_large" {
		t.Fatalf("got %v", err)
	}
}

func TestRetryReplaysBodyOnAnotherTarget(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	fail := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, "fail:"+string(b))
		mu.Unlock()
		w.WriteHeader(503)
	}))
	defer fail.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, "ok:"+string(b))
		mu.Unlock()
	}))
	defer ok.Close()
	retry := upstream.RetryPolicy{Attempts: 1, OnStatus: []int{503}, Budget: 1, MaxBody: 1024}
	h := newProxy(t, Options{}, upstream.Options{Retry: retry}, fail.URL, ok.URL)
	for range 4 {
		rec, err := serve(h, httptest.NewRequest("PUT", "/", strings.NewReader("payload")))
		if err != nil || rec.Code != 200 {
			t.Fatalf("%d %v", rec.Code, err)
		}
	}
	for _, b := range bodies {
		if !strings.HasSuffix(b, ":payload") {
			t.Fatalf("body not replayed: %v", bodies)
		}
	}
	// Too large to replay: not retried, the 503 passes through.
	big := strings.Repeat("x", 2048)
	saw503 := false
	for range 4 {
		rec, _ := serve(h, httptest.NewRequest("PUT", "/", strings.NewReader(big)))
		saw503 = saw503 || rec.Code == 503
	}
	if !saw503 {
		t.Fatal("a body larger than max_body was retried")
	}
}

func TestStreamingFlushesAndTrailers(t *testing.T) {
	release := make(chan struct{})
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		<-release
		w.Header().Set("X-Sum", "ok")
	}))
	defer b.Close()
	h := newProxy(t, Options{}, upstream.Options{}, b.URL)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := &policy.Exchange{}
		if err := h.ServeHTTP(w, r.WithContext(policy.WithExchange(r.Context(), ex))); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	line := make(chan string, 1)
	go func() { l, _ := br.ReadString('\n'); line <- l }()
	select {
	case l := <-line:
		if l != "data: 1\n" {
			t.Fatalf("got %q", l)
		}
	case <-ctx.Done():
		t.Fatal("first event not flushed through")
	}
	close(release)
	io.Copy(io.Discard, br)
	if resp.Trailer.Get("X-Sum") != "ok" {
		t.Fatalf("trailer %v", resp.Trailer)
	}
}

// BenchmarkProxy is the proxy terminal with the route defaults (timeout, stream idle timeout,
// request id); BenchmarkBareReverseProxy is httputil.ReverseProxy alone on the same backend,
// the floor the harness's "goproxy" target represents. Compare their allocs/op and B/op.
func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"ok":true}`) }))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	up, _ := upstream.New(upstream.Options{Name: "u", Targets: []upstream.TargetSpec{{URL: u, Weight: 1}}}, &refpool.Pool{}, nil)
	defer up.Close()
	h, _ := New(Options{Upstream: up, Timeout: 30 * time.Second, StreamIdleTimeout: 5 * time.Minute})
	ex := &policy.Exchange{RequestID: "0123456789abcdef0123456789abcdef", ClientIP: netip.MustParseAddr("192.0.2.7")}
	r := httptest.NewRequest("GET", "/json", nil)
	r = r.WithContext(policy.WithExchange(r.Context(), ex))
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBareReverseProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"ok":true}`) }))
	defer backend.Close()
	u, _ := url.Parse(backend.URL)
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	defer tr.CloseIdleConnections()
	rp := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport:  tr,
		BufferPool: buffers,
	}
	r := httptest.NewRequest("GET", "/json", nil)
	b.ReportAllocs()
	for b.Loop() {
		rp.ServeHTTP(httptest.NewRecorder(), r)
	}
}

// TestStreamIdleTimeout: after response headers the route timeout no longer applies; a stream
// that keeps sending outlives it, and one that goes silent is cut after the idle timeout.
func TestStreamIdleTimeout(t *testing.T) {
	// 10 events 20ms apart outlast the 100ms route timeout; the 1.5s idle timeout leaves a wide
	// margin for a loaded machine between events.
	const every, count = 20 * time.Millisecond, 10
	stall := make(chan struct{})
	defer close(stall)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i := range count {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(every)
		}
		if r.URL.Path == "/silent" {
			select {
			case <-stall:
			case <-r.Context().Done():
			}
		}
	}))
	defer b.Close()
	h := newProxy(t, Options{Timeout: 100 * time.Millisecond, StreamIdleTimeout: 1500 * time.Millisecond}, upstream.Options{}, b.URL)

	rec, err := serve(h, httptest.NewRequest("GET", "/steady", nil))
	if err != nil {
		t.Fatalf("steady stream: %v", err)
	}
	if got := strings.Count(rec.Body.String(), "data: "); got != count {
		t.Errorf("steady stream delivered %d events, want %d", got, count)
	}

	done := make(chan struct{})
	var silentErr any
	var silent *httptest.ResponseRecorder
	go func() {
		defer close(done)
		// A stream cut after headers cannot be rendered: the proxy aborts the handler.
		defer func() { silentErr = recover() }()
		silent, _ = serve(h, httptest.NewRequest("GET", "/silent", nil))
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a silent stream was not cut by the idle timeout")
	}
	if silentErr != nil && silentErr != http.ErrAbortHandler {
		t.Fatalf("silent stream panicked with %v", silentErr)
	}
	if silent != nil {
		if got := strings.Count(silent.Body.String(), "data: "); got != count {
			t.Errorf("silent stream delivered %d events before the cut, want %d", got, count)
		}
	}
}

// TestRouteTimeoutBeforeHeaders: an upstream that never answers gets 504 upstream_timeout.
func TestRouteTimeoutBeforeHeaders(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer b.Close()
	h := newProxy(t, Options{Timeout: 100 * time.Millisecond, StreamIdleTimeout: time.Minute}, upstream.Options{}, b.URL)
	_, err := serve(h, httptest.NewRequest("GET", "/", nil))
	var pe *policy.Error
	if !errors.As(err, &pe) || pe.Status != http.StatusGatewayTimeout || pe.Code != "upstream_timeout" {
		t.Fatalf("got %v, want 504 upstream_timeout", err)
	}
}

// TestHashKeyIsTheClientRequest: the hash balancer hashes what the client sent (here its path),
// not the rewritten request, and keeps a key on one target.
func TestHashKeyIsTheClientRequest(t *testing.T) {
	var backends []string
	for i := range 3 {
		name := fmt.Sprint("b", i)
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/same" {
				t.Errorf("upstream path %q, want the rewritten /same", r.URL.Path)
			}
			w.Header().Set("X-Backend", name)
		}))
		defer b.Close()
		backends = append(backends, b.URL)
	}
	h := newProxy(t, Options{RewritePath: func(string, policy.Params) string { return "/same" }},
		upstream.Options{Balance: upstream.Hash, HashOn: "path"}, backends...)
	home := map[string]string{}
	used := map[string]bool{}
	for round := range 3 {
		for i := range 30 {
			path := fmt.Sprintf("/items/%d", i)
			rec, err := serve(h, httptest.NewRequest("GET", "http://api.example.com"+path, nil))
			if err != nil {
				t.Fatal(err)
			}
			got := rec.Header().Get("X-Backend")
			if round > 0 && got != home[path] {
				t.Fatalf("%s went to %s, earlier to %s", path, got, home[path])
			}
			home[path] = got
			used[got] = true
		}
	}
	if len(used) < 2 {
		t.Fatalf("30 paths all hashed to %v: the key is not the client's path", used)
	}
}

// TestLatencyReachesTheEstimate: the proxy reports each attempt's time to response headers.
func TestLatencyReachesTheEstimate(t *testing.T) {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
	}))
	defer b.Close()
	up, err := upstream.New(upstream.Options{Name: "u", Balance: upstream.EWMA,
		Targets: []upstream.TargetSpec{{URL: must(url.Parse(b.URL)), Weight: 1}}}, &refpool.Pool{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	h, _ := New(Options{Upstream: up})
	if _, err := serve(h, httptest.NewRequest("GET", "http://api.example.com/", nil)); err != nil {
		t.Fatal(err)
	}
	// The estimate is about the backend's sleep or more, whatever the machine's speed (19, not
	// 20: it decays a little between the response and the read).
	if ms := up.Status().Targets[0].LatencyMillis; ms == nil || *ms < 19 {
		t.Fatalf("latency estimate %v, want at least 20ms", ms)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
