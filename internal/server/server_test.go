package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// seen is what the dispatcher observed of one request.
type seen struct {
	method, path, rawPath, host, origHost string
	header                                http.Header
	ex                                    policy.Exchange
	tls                                   bool
	bodyLen                               int64
	bodyErr                               error
}

// recorder is a dispatcher that remembers what reached it. Special paths: /panic, /panic-late,
// /abort, /slow (blocks until release is closed), /hijack (hijacks and echoes).
type recorder struct {
	mu      sync.Mutex
	reqs    []seen
	release chan struct{}
	entered chan string
}

func newRecorder() *recorder {
	return &recorder{release: make(chan struct{}), entered: make(chan string, 16)}
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	s := seen{method: r.Method, path: r.URL.Path, rawPath: r.URL.RawPath, host: r.URL.Host, origHost: r.Host,
		header: r.Header.Clone(), tls: r.TLS != nil, bodyLen: n, bodyErr: err}
	if ex := policy.ExchangeFrom(r.Context()); ex != nil {
		s.ex = *ex
	}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, s)
	rc.mu.Unlock()
	select {
	case rc.entered <- r.URL.Path:
	default:
	}
	if err != nil {
		httpx.WriteProblem(w, r, http.StatusBadRequest, "bad_request_body", err.Error())
		return
	}
	switch r.URL.Path {
	case "/panic":
		panic("boom")
	case "/panic-late":
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic("late boom")
	case "/abort":
		panic(http.ErrAbortHandler)
	case "/slow":
		<-rc.release
	case "/hijack":
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo until the peer or Shutdown closes it
		c.Close()
		return
	case "/upgrade-refused":
		http.Error(w, "no", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Path", r.URL.RawPath)
	io.WriteString(w, "ok")
}

// waitFor waits until the dispatcher has entered a request for path.
func (rc *recorder) waitFor(t *testing.T, path string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-rc.entered:
			if p == path {
				return
			}
		case <-timeout:
			t.Fatalf("no request for %s reached the dispatcher", path)
		}
	}
}

func (rc *recorder) all() []seen {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]seen(nil), rc.reqs...)
}

func (rc *recorder) paths() []string {
	var out []string
	for _, s := range rc.all() {
		out = append(out, s.rawPath)
	}
	return out
}

func trust(t *testing.T, cidrs ...string) *httpx.Trusted {
	t.Helper()
	tr, err := httpx.ParseTrusted(cidrs)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func baseSpec(name string, h Hygiene) ListenerSpec {
	h.Paths.MergeSlashes = true
	return ListenerSpec{Name: name, Addr: "127.0.0.1:0", HTTP1: true, ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10, Hygiene: h}
}

func startWith(t *testing.T, rc http.Handler, specs ...ListenerSpec) *Server {
	t.Helper()
	s := New(rc, nil)
	if err := s.Apply(specs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

func startServer(t *testing.T, h Hygiene) (*Server, *recorder, string) {
	t.Helper()
	rc := newRecorder()
	s := startWith(t, rc, baseSpec("t", h))
	return s, rc, s.Addr("t").String()
}

type response struct {
	status int
	header http.Header
	body   string
	close  bool
}

func (r response) code() string {
	var p struct{ Code string }
	_ = json.Unmarshal([]byte(r.body), &p)
	return p.Code
}

// rawExchange writes raw on a new connection and reads responses until the server closes it
// (it fails the test when the server does not within 10s).
// Requests meant to keep the connection open end with a "Connection: close" request of their own.
func rawExchange(t *testing.T, addr, raw string) []response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err) // may run on a goroutine of its own: no Fatal
		return nil
	}
	defer c.Close()
	return readAll(t, c, raw)
}

func readAll(t *testing.T, c net.Conn, raw string) []response {
	t.Helper()
	go io.WriteString(c, raw) // a rejected request may not be read in full: never block on it
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	var out []response
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Errorf("the server kept the connection open after %d responses", len(out))
			}
			return out
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, response{resp.StatusCode, resp.Header, string(b), resp.Close})
	}
}

func codes(rs []response) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%d %s", r.status, r.code()))
	}
	return strings.Join(parts, ", ")
}

const closeReq = "GET /end HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

func TestFramingGuard(t *testing.T) {
	t.Parallel()
	_, rc, addr := startServer(t, Hygiene{})
	cases := []struct {
		name, raw, want string
		served          []string
	}{
		{"CL and TE", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "400 ambiguous_framing", nil},
		{"duplicate CL", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\naGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "400 duplicate_content_length", nil},
		{"TE chunked, identity", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", "400 unsupported_transfer_encoding", nil},
		{"TE xchunked", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", "400 unsupported_transfer_encoding", nil},
		{"obs-fold", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", "400 obsolete_line_folding", nil},
		{"bare LF", "GET /a HTTP/1.1\nHost: x\n\n", "400 bad_line_ending", nil},
		{"space before colon", "GET /a HTTP/1.1\r\nHost : x\r\n\r\n", "400 whitespace_before_colon", nil},
		{"header too large", "GET /a HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", "431 header_too_large", nil},
		{"bad chunk size", "POST /chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "400 bad_request_body", []string{"/chunk"}},
		{"pipelined good requests", "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n" + closeReq, "200 , 200 , 200 ", []string{"/one", "/two", "/end"}},
		{"pipelined good then bad", "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "200 , 400 obsolete_line_folding", []string{"/one"}},
		{"chunked with extension and trailer", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n" + closeReq, "200 , 200 ", []string{"/c", "/end"}},
		{"refused upgrade then smuggling", "GET /upgrade-refused HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nPOST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "404 , 400 ambiguous_framing", []string{"/upgrade-refused"}},
	}
	var mu sync.Mutex // the cases share one dispatcher: run them one at a time
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			defer mu.Unlock()
			before := len(rc.paths())
			resps := rawExchange(t, addr, c.raw)
			if got := codes(resps); got != c.want {
				t.Fatalf("responses %q, want %q", got, c.want)
			}
			if got := rc.paths()[before:]; strings.Join(got, " ") != strings.Join(c.served, " ") {
				t.Fatalf("dispatcher saw %v, want %v", got, c.served)
			}
			if strings.HasPrefix(c.want, "4") && !resps[len(resps)-1].close {
				t.Errorf("a refusal without Connection: close")
			}
		})
	}
	for _, p := range rc.paths() {
		if p == "/smuggled" {
			t.Fatal("a smuggled request reached the dispatcher")
		}
	}
}

func TestLargeChunkedBodyStreams(t *testing.T) {
	t.Parallel()
	_, rc, addr := startServer(t, Hygiene{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const chunks, size = 1024, 4096
	go func() {
		w := bufio.NewWriter(c)
		w.WriteString("POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
		chunk := strings.Repeat("b", size)
		for range chunks {
			fmt.Fprintf(w, "%x\r\n%s\r\n", size, chunk)
		}
		w.WriteString("0\r\n\r\n")
		w.Flush()
	}()
	resps := readAll(t, c, "")
	if codes(resps) != "200 " {
		t.Fatalf("responses %s", codes(resps))
	}
	if got := rc.all()[0].bodyLen; got != chunks*size {
		t.Fatalf("body %d bytes, want %d", got, chunks*size)
	}
}

func TestPathVectors(t *testing.T) {
	t.Parallel()
	_, rc, addr := startServer(t, Hygiene{})
	cases := []struct {
		name, target, want string // want: the normalized path, or the problem code
	}{
		{"dot-dot", "/public/../admin", "/admin"},
		{"encoded dot-dot", "/public/%2e%2E/admin", "/admin"},
		{"double slash", "//admin//users", "/admin/users"},
		{"encoded slash", "/public%2F..%2Fadmin", "encoded_slash"},
		{"semicolon dot-dot", "/public/..;/admin", "dot_segment_parameter"},
		{"semicolon kept", "/a;b/c", "/a;b/c"},
		{"backslash", "/public\\..\\admin", "backslash_in_path"},
		{"NUL", "/a%00", "nul_in_path"},
		{"unreserved decoded", "/%7Euser/%41", "/~user/A"},
		{"absolute-form", "http://example.com/a/../b?q=1", "/b"},
		{"absolute-form no path", "http://example.com?q=1", "/"},
		{"asterisk-form", "*", "bad_path"},
		{"OPTIONS asterisk", "OPTIONS *", ""},
	}
	var mu sync.Mutex
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mu.Lock()
			defer mu.Unlock()
			before := len(rc.paths())
			target := c.target
			if !strings.HasPrefix(target, "OPTIONS ") {
				target = "GET " + target
			}
			resps := rawExchange(t, addr, target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if len(resps) != 1 {
				t.Fatalf("%d responses", len(resps))
			}
			if c.want == "" {
				// net/http answers "OPTIONS *" itself (200, no body); it never reaches us.
				if resps[0].status != 200 || len(rc.paths()) != before {
					t.Fatalf("OPTIONS *: %d, dispatched %v", resps[0].status, rc.paths()[before:])
				}
				return
			}
			if strings.HasPrefix(c.want, "/") {
				got := rc.paths()[before:]
				if resps[0].status != 200 || len(got) != 1 || got[0] != c.want {
					t.Fatalf("status %d, dispatcher saw %v, want %s", resps[0].status, got, c.want)
				}
				return
			}
			if resps[0].status != 400 || resps[0].code() != c.want {
				t.Fatalf("got %d %q, want 400 %s", resps[0].status, resps[0].code(), c.want)
			}
			if len(rc.paths()) != before {
				t.Fatal("a refused path reached the dispatcher")
			}
		})
	}
}

func TestHostNormalization(t *testing.T) {
	t.Parallel()
	_, rc, addr := startServer(t, Hygiene{})
	resps := rawExchange(t, addr, "GET /h HTTP/1.1\r\nHost: API.Example.COM.:8080\r\n\r\nGET /bad HTTP/1.1\r\nHost: a..b\r\n\r\n"+closeReq)
	if codes(resps) != "200 , 400 bad_host, 200 " {
		t.Fatalf("responses %s", codes(resps))
	}
	s := rc.all()
	if len(s) != 2 || s[0].host != "api.example.com" || s[0].origHost != "API.Example.COM.:8080" {
		t.Fatalf("dispatcher saw %+v", s)
	}
}

const spoofed = "GET /id HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.5\r\nX-Request-ID: abc-123\r\n" +
	"X-Consumer-ID: admin\r\nX_Consumer_ID: admin\r\nX_Forwarded_For: 198.51.100.1\r\nForwarded: for=192.0.2.9\r\n" +
	"True-Client-IP: 192.0.2.10\r\nConnection: close\r\n\r\n"

func TestUntrustedHeadersStripped(t *testing.T) {
	t.Parallel()
	_, rc, addr := startServer(t, Hygiene{ClientIP: httpx.SourceXForwardedFor, StripHeaders: []string{"X-Consumer-ID"}})
	rawExchange(t, addr, spoofed)
	s := rc.all()[0]
	for _, k := range []string{"X-Forwarded-For", "X-Request-Id", "X-Consumer-Id", "X_consumer_id", "X_forwarded_for", "Forwarded", "True-Client-Ip"} {
		if v, ok := s.header[k]; ok {
			t.Errorf("%s survived: %q", k, v)
		}
	}
	if s.ex.ClientIP.String() != "127.0.0.1" || s.ex.RequestID == "abc-123" || len(s.ex.RequestID) != 32 || s.ex.Listener != "t" || s.ex.Start.IsZero() {
		t.Errorf("exchange %+v", s.ex)
	}
}

func TestTrustedHeadersKept(t *testing.T) {
	t.Parallel()
	_, rc, addr := startServer(t, Hygiene{ClientIP: httpx.SourceXForwardedFor, Trusted: trust(t, "127.0.0.1/32"), StripHeaders: []string{"X-Consumer-ID"}})
	rawExchange(t, addr, spoofed)
	s := rc.all()[0]
	if s.header.Get("X-Forwarded-For") != "203.0.113.5" || s.header.Get("Forwarded") == "" {
		t.Errorf("forwarding headers from a trusted peer removed: %v", s.header)
	}
	if _, ok := s.header["X-Consumer-Id"]; ok {
		t.Error("an identity header survived from a trusted peer")
	}
	if _, ok := s.header["X_consumer_id"]; ok {
		t.Error("an underscore identity header survived from a trusted peer")
	}
	if s.ex.ClientIP.String() != "203.0.113.5" || s.ex.RequestID != "abc-123" {
		t.Errorf("exchange %+v", s.ex)
	}
}

func TestH2CUpgradeStripped(t *testing.T) {
	t.Parallel()
	_, rc, addr := startServer(t, Hygiene{})
	resps := rawExchange(t, addr, "GET /u HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n"+
		"GET /v HTTP/1.1\r\nHost: x\r\nUpgrade: h2c, websocket\r\nConnection: Upgrade\r\n\r\n"+closeReq)
	if codes(resps) != "200 , 200 , 200 " {
		t.Fatalf("responses %s", codes(resps))
	}
	s := rc.all()
	if _, ok := s[0].header["Upgrade"]; ok || s[0].header.Get("Http2-Settings") != "" {
		t.Errorf("h2c upgrade survived: %v", s[0].header)
	}
	if got := s[1].header.Get("Upgrade"); got != "websocket" {
		t.Errorf("Upgrade %q, want websocket", got)
	}
}

func TestConnect(t *testing.T) {
	t.Parallel()
	_, rc, addr := startServer(t, Hygiene{})
	resps := rawExchange(t, addr, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"+closeReq)
	if codes(resps) != "405 method_not_allowed, 200 " || len(rc.all()) != 1 {
		t.Fatalf("responses %s, dispatched %d", codes(resps), len(rc.all()))
	}
	_, rc, addr = startServer(t, Hygiene{AllowConnect: true})
	rawExchange(t, addr, "CONNECT Example.com:443 HTTP/1.1\r\nHost: Example.com:443\r\nConnection: close\r\n\r\n")
	if s := rc.all(); len(s) != 1 || s[0].method != "CONNECT" || s[0].host != "example.com" {
		t.Fatalf("dispatcher saw %+v", s)
	}
}

func TestPanics(t *testing.T) {
	t.Parallel()
	_, _, addr := startServer(t, Hygiene{})
	if got := codes(rawExchange(t, addr, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")); got != "500 internal_error" {
		t.Errorf("panic: %s", got)
	}
	// A panic after the response started and http.ErrAbortHandler both cut the connection:
	// the client never gets a complete response.
	for _, path := range []string{"/abort", "/panic-late"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
		}
		if err == nil {
			t.Errorf("%s: a complete response", path)
		}
		c.Close()
	}
}

func TestRawHandlerSkipsHygiene(t *testing.T) {
	t.Parallel()
	var got http.Header
	raw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		if policy.ExchangeFrom(r.Context()) != nil {
			t.Error("raw handler got an Exchange")
		}
	})
	spec := baseSpec("admin", Hygiene{})
	spec.Handler = raw
	s := startWith(t, newRecorder(), spec)
	addr := s.Addr("admin").String()
	rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\nConnection: close\r\n\r\n")
	if got.Get("X-Forwarded-For") == "" {
		t.Error("raw handler's headers were stripped")
	}
	// The framing guard still protects it.
	if c := codes(rawExchange(t, addr, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")); c != "400 ambiguous_framing" {
		t.Errorf("raw listener framing: %s", c)
	}
}
