package httpx

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2e/x", "//a//b", "/a%2Fb", "/a;b/..;/c", "/a\\b", "/%zz", "/caf%c3%a9/./"} {
		f.Add(s, true, false)
	}
	f.Fuzz(func(t *testing.T, raw string, merge, keep bool) {
		o := PathOptions{MergeSlashes: merge, KeepEscapedSlashes: keep}
		out, err := NormalizePath(raw, o)
		if err != nil {
			return
		}
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("%q -> %q does not start with /", raw, out)
		}
		again, err := NormalizePath(out, o)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", raw, out, again, err)
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q keeps a dot-segment", raw, out)
			}
		}
		if strings.ContainsAny(out, "\\\x00") || merge && strings.Contains(out, "//") {
			t.Fatalf("%q -> %q", raw, out)
		}
	})
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"a.example.com", "[::1]:8080", "A.B.:80", "a@b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeHost(in)
		if err != nil {
			return
		}
		if out != strings.ToLower(out) || strings.ContainsAny(out, "/@ \\") {
			t.Fatalf("%q -> %q", in, out)
		}
	})
}

func FuzzParseForwarded(f *testing.F) {
	for _, s := range []string{`for=192.0.2.60;proto=http`, `for="[2001:db8::1]:80", for=unknown`, `for=_x;by=y`, `host="a\"b"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		_, _ = ParseForwarded([]string{v})
	})
}

func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "1.2.3.4, 10.0.0.1", "[::1]:80, garbage", ",,,", "::ffff:10.0.0.1"} {
		f.Add(s)
	}
	trusted, _ := ParseTrusted([]string{"10.0.0.0/8"})
	peer := netip.MustParseAddr("10.0.0.9")
	f.Fuzz(func(t *testing.T, xff string) {
		got := ClientIP(peer, http.Header{"X-Forwarded-For": {xff}}, SourceXForwardedFor, trusted)
		if !got.IsValid() || got.Is4In6() {
			t.Fatalf("XFF %q -> %v", xff, got)
		}
	})
}
