package httpx

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/policy"
)

func TestNormalizePath(t *testing.T) {
	t.Parallel()
	def := PathOptions{MergeSlashes: true}
	cases := []struct {
		in, want string
		opts     PathOptions
		err      error
	}{
		{"/", "/", def, nil},
		{"/a/b", "/a/b", def, nil},
		{"/public/../admin", "/admin", def, nil},
		{"/public/%2e%2e/admin", "/admin", def, nil},
		{"/public/%2E%2e/admin", "/admin", def, nil},
		{"/public/.%2e/admin", "/admin", def, nil},
		{"/../../etc", "/etc", def, nil},
		{"/a/./b/.", "/a/b/", def, nil},
		{"/a/b/..", "/a/", def, nil},
		{"//admin//x", "/admin/x", def, nil},
		{"//admin//x", "//admin//x", PathOptions{}, nil},
		{"/a%7eb", "/a~b", def, nil},
		{"/a%20b", "/a%20b", def, nil},
		{"/caf%c3%a9", "/caf%C3%A9", def, nil},
		{"/a;b", "/a;b", def, nil},
		{"/public/..;/admin", "", def, ErrDotSegment},
		{"/public/.;x/admin", "", def, ErrDotSegment},
		{"/a%2Fb", "", def, ErrEncodedSlash},
		{"/a%2fb", "", def, ErrEncodedSlash},
		{"/a%5Cb", "", def, ErrEncodedSlash},
		{"/a%2fb", "/a%2Fb", PathOptions{MergeSlashes: true, KeepEscapedSlashes: true}, nil},
		{"/a\\b", "", def, ErrBackslash},
		{"/a%00", "", def, ErrNUL},
		{"/a%zz", "", def, ErrBadEscape},
		{"/a%2", "", def, ErrBadEscape},
		{"/a%0a", "", def, ErrBadPath},
		{"a", "", def, ErrBadPath},
		{"", "", def, ErrBadPath},
		{"/Users/X", "/Users/X", def, nil},
	}
	for _, c := range cases {
		got, err := NormalizePath(c.in, c.opts)
		if !errors.Is(err, c.err) || got != c.want {
			t.Errorf("NormalizePath(%q) = %q, %v; want %q, %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestNormalizeHost(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"API.Example.com.:8080": "api.example.com",
		"example.com":           "example.com",
		"[::1]:80":              "::1",
		"127.0.0.1:9":           "127.0.0.1",
		"a..b":                  "",
		"a b":                   "",
		"evil.com@good.com":     "",
		"a/b":                   "",
		"":                      "",
		"host:port":             "",
	}
	for in, want := range cases {
		got, err := NormalizeHost(in)
		if (want == "") != (err != nil) || got != want {
			t.Errorf("NormalizeHost(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestClientIP(t *testing.T) {
	t.Parallel()
	trusted, _ := ParseTrusted([]string{"10.0.0.0/8", "127.0.0.1"})
	peerTrusted := netip.MustParseAddr("10.1.1.1")
	peerUntrusted := netip.MustParseAddr("198.51.100.7")
	cases := []struct {
		name string
		peer netip.Addr
		src  IPSource
		hdr  http.Header
		want string
	}{
		{"peer source ignores headers", peerTrusted, SourcePeer, http.Header{"X-Forwarded-For": {"1.2.3.4"}}, "10.1.1.1"},
		{"untrusted peer's header ignored", peerUntrusted, SourceXForwardedFor, http.Header{"X-Forwarded-For": {"1.2.3.4"}}, "198.51.100.7"},
		{"rightmost untrusted", peerTrusted, SourceXForwardedFor, http.Header{"X-Forwarded-For": {"6.6.6.6, 1.2.3.4, 10.0.0.2"}}, "1.2.3.4"},
		{"several header lines", peerTrusted, SourceXForwardedFor, http.Header{"X-Forwarded-For": {"6.6.6.6", "1.2.3.4"}}, "1.2.3.4"},
		{"ports stripped", peerTrusted, SourceXForwardedFor, http.Header{"X-Forwarded-For": {"[2001:db8::1]:443"}}, "2001:db8::1"},
		{"mapped unmapped", peerTrusted, SourceXForwardedFor, http.Header{"X-Forwarded-For": {"::ffff:1.2.3.4"}}, "1.2.3.4"},
		{"garbage stops walk", peerTrusted, SourceXForwardedFor, http.Header{"X-Forwarded-For": {"1.2.3.4, garbage"}}, "10.1.1.1"},
		{"all trusted", peerTrusted, SourceXForwardedFor, http.Header{"X-Forwarded-For": {"10.0.0.3"}}, "10.0.0.3"},
		{"forwarded", peerTrusted, SourceForwarded, http.Header{"Forwarded": {`for=6.6.6.6, for="[2001:db8::2]:80";proto=https`}}, "2001:db8::2"},
		{"forwarded obfuscated", peerTrusted, SourceForwarded, http.Header{"Forwarded": {`for=_hidden`}}, "10.1.1.1"},
	}
	for _, c := range cases {
		if got := ClientIP(c.peer, c.hdr, c.src, trusted); got.String() != c.want {
			t.Errorf("%s: got %s, want %s", c.name, got, c.want)
		}
	}
}

func TestParseForwarded(t *testing.T) {
	t.Parallel()
	els, err := ParseForwarded([]string{`for=192.0.2.60;proto=http;by=203.0.113.43`, `For="[2001:db8:cafe::17]:4711", for=unknown;host="a\"b"`})
	if err != nil || len(els) != 3 {
		t.Fatalf("got %v, %v", els, err)
	}
	if els[1].For != "[2001:db8:cafe::17]:4711" || els[2].Host != `a"b` || els[0].Proto != "http" {
		t.Fatalf("parsed %+v", els)
	}
	for _, bad := range []string{`for`, `for="unterminated`, `=x`, `for=a b`, ``} {
		if _, err := ParseForwarded([]string{bad}); err == nil {
			t.Errorf("ParseForwarded(%q) accepted", bad)
		}
	}
}

func TestWriteErrorProblemJSON(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	rec.Header().Set("Access-Control-Allow-Origin", "https://app.example.com")
	rec.Header().Set("Content-Length", "999")
	ex := &policy.Exchange{RequestID: "rid-1"}
	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(policy.WithExchange(r.Context(), ex))
	status, code := WriteError(rec, r, &policy.Error{Status: 429, Code: "rate_limited", Detail: "slow \"down\"", Header: http.Header{"Retry-After": {"3"}}})
	if status != 429 || code != "rate_limited" || rec.Code != 429 {
		t.Fatalf("status %d code %s", status, code)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	if body["code"] != "rate_limited" || body["detail"] != `slow "down"` || body["request_id"] != "rid-1" || body["status"] != float64(429) {
		t.Fatalf("body %v", body)
	}
	if rec.Header().Get("Access-Control-Allow-Origin") == "" || rec.Header().Get("Retry-After") != "3" {
		t.Fatal("headers set before the error were dropped")
	}
	if rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatal("content type")
	}

	rec = httptest.NewRecorder()
	status, _ = WriteError(rec, r, errors.New("secret database password wrong"))
	if status != 500 || strings.Contains(rec.Body.String(), "secret") {
		t.Fatalf("internal error leaked: %s", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	status, code = WriteError(rec, r, &http.MaxBytesError{Limit: 10})
	if status != 413 || code != "body_too_large" {
		t.Fatalf("max bytes: %d %s", status, code)
	}
}

func TestWriteErrorGRPC(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/pkg.Svc/Method", nil)
	r.Header.Set("Content-Type", "application/grpc+proto")
	WriteError(rec, r, &policy.Error{Status: 401, Code: "unauthorized", Detail: "no token 100%"})
	if rec.Code != 200 || rec.Header().Get("Grpc-Status") != "16" || rec.Header().Get("Grpc-Message") != "no token 100%25" || rec.Body.Len() != 0 {
		t.Fatalf("grpc: %d %v %q", rec.Code, rec.Header(), rec.Body.String())
	}
}

func TestStatusWriter(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	var sw StatusWriter
	sw.Reset(rec)
	sw.WriteHeader(http.StatusEarlyHints)
	if sw.WroteHeader() {
		t.Fatal("1xx recorded as final")
	}
	rec = httptest.NewRecorder()
	sw.Reset(rec)
	sw.Write([]byte("hello"))
	if sw.Status() != 200 || sw.BytesWritten() != 5 || !sw.WroteHeader() {
		t.Fatalf("status %d bytes %d", sw.Status(), sw.BytesWritten())
	}
	if http.NewResponseController(&sw).Flush() != nil {
		t.Fatal("flush through Unwrap failed")
	}
}

func BenchmarkNormalizePathFast(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NormalizePath("/api/v1/users/12345/profile", PathOptions{MergeSlashes: true}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClientIPXFF(b *testing.B) {
	trusted, _ := ParseTrusted([]string{"10.0.0.0/8"})
	h := http.Header{"X-Forwarded-For": {"203.0.113.9, 10.0.0.2"}}
	peer := netip.MustParseAddr("10.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		ClientIP(peer, h, SourceXForwardedFor, trusted)
	}
}
