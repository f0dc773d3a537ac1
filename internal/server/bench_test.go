package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkHygiene measures the server's per-request work around the dispatcher: path and host
// normalization, header stripping, client IP, request id, the pooled Exchange and recovery.
func BenchmarkHygiene(b *testing.B) {
	s := New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), nil)
	rs, err := prepare(baseSpec("bench", Hygiene{StripHeaders: []string{"X-Consumer-ID", "X-Consumer-Groups"}}))
	if err != nil {
		b.Fatal(err)
	}
	sk := &socket{s: s}
	sk.spec.Store(rs)
	h := s.handler(sk)
	req := httptest.NewRequest("GET", "/api/v1/users/42?expand=groups", nil)
	req.RequestURI = "/api/v1/users/42?expand=groups"
	req.Host = "API.example.com:8080"
	req.RemoteAddr = "192.0.2.7:51234"
	for _, k := range []string{"User-Agent", "Accept", "Accept-Encoding", "Authorization", "X-Forwarded-For"} {
		req.Header.Set(k, "v")
	}
	w := httptest.NewRecorder()
	b.ReportAllocs()
	xff := []string{"203.0.113.9"}
	for b.Loop() {
		req.Header["X-Forwarded-For"] = xff // stripped each time: the peer is not trusted
		h.ServeHTTP(w, req)
	}
}
