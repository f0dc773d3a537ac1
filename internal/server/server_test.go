package server

import (
	"bufio"
	"context"
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

// recorder is a dispatcher that remembers what reached it.
type recorder struct {
	mu   sync.Mutex
	seen []*http.Request
	ex   []policy.Exchange
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.seen = append(rc.seen, r)
	rc.ex = append(rc.ex, *policy.ExchangeFrom(r.Context()))
	rc.mu.Unlock()
	io.Copy(io.Discard, r.Body)
	if r.URL.Path == "/panic" {
		panic("boom")
	}
	w.Header().Set("X-Path", r.URL.RawPath)
	io.WriteString(w, "ok")
}

func (rc *recorder) paths() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for _, r := range rc.seen {
		out = append(out, r.URL.RawPath)
	}
	return out
}

func startServer(t *testing.T, h Hygiene) (*Server, *recorder, string) {
	t.Helper()
	rc := &recorder{}
	s := New(rc, nil)
	if h.Trusted == nil {
		h.Trusted, _ = httpx.ParseTrusted(nil)
	}
	h.Paths.MergeSlashes = true
	if err := s.Apply([]ListenerSpec{{Name: "t", Addr: "127.0.0.1:0", HTTP1: true, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 1 << 16, Hygiene: h}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, rc, s.Addr("t").String()
}

// exchange sends raw bytes and reads every response until the server closes or goes quiet.
func exchange(t *testing.T, addr, raw string) ([]*http.Response, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, raw)
	br := bufio.NewReader(c)
	var out []*http.Response
	for {
		c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			ne, ok := err.(net.Error)
			return out, !(ok && ne.Timeout())
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, resp)
	}
}

func TestFramingGuard(t *testing.T) {
	_, rc, addr := startServer(t, Hygiene{})
	cases := []struct {
		name, raw string
		codes     []int
		closed    bool
		served    int
	}{
		{"CL and TE smuggling", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", []int{400}, true, 0},
		{"duplicate CL", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", []int{400}, true, 0},
		{"TE not chunked last", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", []int{400}, true, 0},
		{"obs-fold", "GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n", []int{400}, true, 0},
		{"bare LF", "GET /a HTTP/1.1\nHost: x\n\n", []int{400}, true, 0},
		{"space before colon", "GET /a HTTP/1.1\r\nHost : x\r\n\r\n", []int{400}, true, 0},
		{"pipelined good then bad", "GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\n\r\n", []int{200, 400}, true, 1},
		{"pipelined chunked body", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n", []int{200, 200}, false, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(rc.paths())
			resps, closed := exchange(t, addr, c.raw)
			var codes []int
			for _, r := range resps {
				codes = append(codes, r.StatusCode)
			}
			if len(codes) != len(c.codes) {
				t.Fatalf("codes %v, want %v", codes, c.codes)
			}
			for i := range codes {
				if codes[i] != c.codes[i] {
					t.Fatalf("codes %v, want %v", codes, c.codes)
				}
			}
			if closed != c.closed {
				t.Errorf("closed=%v, want %v", closed, c.closed)
			}
			if served := len(rc.paths()) - before; served != c.served {
				t.Errorf("dispatcher saw %d requests (%v), want %d", served, rc.paths()[before:], c.served)
			}
			for _, p := range rc.paths() {
				if p == "/smuggled" {
					t.Fatal("the smuggled request reached the dispatcher")
				}
			}
		})
	}
}

func TestBadChunkIsCut(t *testing.T) {
	_, _, addr := startServer(t, Hygiene{})
	resps, _ := exchange(t, addr, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
	if len(resps) != 1 || resps[0].StatusCode == 200 && resps[0].Header.Get("X-Path") == "" {
		t.Fatalf("responses %v", resps)
	}
}

func TestHygieneStripsAndIdentifies(t *testing.T) {
	trusted, _ := httpx.ParseTrusted([]string{"127.0.0.1/32"})
	for _, tc := range []struct {
		name    string
		trusted *httpx.Trusted
		wantXFF string
		wantIP  string
		keepID  bool
	}{
		{"untrusted peer", nil, "", "127.0.0.1", false},
		{"trusted peer", trusted, "203.0.113.5", "203.0.113.5", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Hygiene{ClientIP: httpx.SourceXForwardedFor, Trusted: tc.trusted, StripHeaders: []string{"X-Consumer-ID"}}
			_, rc, addr := startServer(t, h)
			exchange(t, addr, "GET /a/../b HTTP/1.1\r\nHost: API.Example.com:80\r\nX-Forwarded-For: 203.0.113.5\r\nX-Request-ID: abc\r\nX-Consumer-ID: admin\r\nUpgrade: h2c\r\nHTTP2-Settings: x\r\nConnection: close\r\n\r\n")
			if len(rc.seen) != 1 {
				t.Fatalf("seen %d", len(rc.seen))
			}
			r, ex := rc.seen[0], rc.ex[0]
			if r.URL.RawPath != "/b" || r.URL.Host != "api.example.com" {
				t.Errorf("path %q host %q", r.URL.RawPath, r.URL.Host)
			}
			if got := r.Header.Get("X-Forwarded-For"); got != tc.wantXFF {
				t.Errorf("XFF %q, want %q", got, tc.wantXFF)
			}
			if ex.ClientIP.String() != tc.wantIP {
				t.Errorf("client ip %s, want %s", ex.ClientIP, tc.wantIP)
			}
			if (ex.RequestID == "abc") != tc.keepID || ex.RequestID == "" {
				t.Errorf("request id %q", ex.RequestID)
			}
			if r.Header.Get("X-Consumer-Id") != "" || r.Header.Get("Upgrade") != "" || r.Header.Get("Http2-Settings") != "" {
				t.Errorf("identity or h2c headers survived: %v", r.Header)
			}
		})
	}
}

func TestPathVectorsAndConnect(t *testing.T) {
	_, rc, addr := startServer(t, Hygiene{})
	for target, want := range map[string]int{
		"/public/%2e%2e/admin": 200, "/a%2Fb": 400, "/a\\b": 400, "/..;/x": 400, "/a%00": 400,
	} {
		resps, _ := exchange(t, addr, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if len(resps) != 1 || resps[0].StatusCode != want {
			t.Errorf("%s: %v, want %d", target, resps, want)
		}
	}
	if p := rc.paths(); len(p) != 1 || p[0] != "/admin" {
		t.Errorf("dispatcher saw %v", p)
	}
	resps, _ := exchange(t, addr, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	if len(resps) != 1 || resps[0].StatusCode != 405 {
		t.Errorf("CONNECT: %v", resps)
	}
}

func TestPanicIs500(t *testing.T) {
	_, _, addr := startServer(t, Hygiene{})
	resps, _ := exchange(t, addr, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if len(resps) != 1 || resps[0].StatusCode != 500 {
		t.Fatalf("%v", resps)
	}
}

func TestApplyKeepsSocketAndRejectsBindFailure(t *testing.T) {
	rc := &recorder{}
	s := New(rc, nil)
	defer s.Shutdown(context.Background())
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	trusted, _ := httpx.ParseTrusted(nil)
	spec := ListenerSpec{Name: "a", Addr: addr, HTTP1: true, Hygiene: Hygiene{Trusted: trusted}}
	if err := s.Apply([]ListenerSpec{spec}); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	get := func() int {
		io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		return resp.StatusCode
	}
	get()
	spec.Name = "renamed"
	if err := s.Apply([]ListenerSpec{spec}); err != nil {
		t.Fatal(err)
	}
	if get() != 200 {
		t.Fatal("keep-alive connection broken by Apply")
	}
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy.Close()
	err = s.Apply([]ListenerSpec{spec, {Name: "b", Addr: busy.Addr().String(), HTTP1: true, Hygiene: Hygiene{Trusted: trusted}}})
	if err == nil {
		t.Fatal("bind failure accepted")
	}
	if get() != 200 || s.Addr("renamed") == nil {
		t.Fatal("a failed Apply disturbed the running listener")
	}
}

func BenchmarkFramingGuard(b *testing.B) {
	req := []byte("GET /api/v1/users/42 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0\r\nAccept: application/json\r\nAccept-Encoding: gzip\r\nX-Request-ID: 0123456789abcdef\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789\r\nConnection: keep-alive\r\n\r\n")
	g := newGuardConn(nil, 1<<16)
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		g.feed(req)
		g.out, g.outPos = g.out[:0], 0
	}
}

func FuzzFramingGuard(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	f.Add("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
	f.Add("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		g := newGuardConn(nil, 1<<16)
		g.feed([]byte(in))
		out := string(g.out)
		// A header block with both framings never passes.
		for _, block := range strings.Split(out, "\r\n\r\n") {
			lower := strings.ToLower(block)
			if strings.Contains(lower, "\r\ncontent-length:") && strings.Contains(lower, "\r\ntransfer-encoding:") && strings.HasPrefix(lower, "post ") && strings.Count(lower, "\r\n") < 20 && !strings.Contains(lower, "\n\n") {
				if g.reason == "" && g.st != stPassthrough && !strings.Contains(in, "\r\n\r\n\r\n") {
					t.Fatalf("ambiguous block passed: %q", block)
				}
			}
		}
	})
}
