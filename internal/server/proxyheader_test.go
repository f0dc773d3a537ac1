package server

import (
	"bufio"
	"encoding/binary"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/internal/httpx"
)

func proxyV2(cmd, fam byte, body []byte) string {
	h := append([]byte(nil), proxyV2Sig...)
	h = append(h, 0x20|cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(h[14:], uint16(len(body)))
	return string(append(h, body...))
}

func TestReadProxyHeader(t *testing.T) {
	t.Parallel()
	v4 := []byte{203, 0, 113, 7, 10, 0, 0, 1, 0x15, 0xb3, 0, 80}
	cases := []struct {
		name, in, src string // src: "" for no address, "err" for an error
	}{
		{"v1 tcp4", "PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\n", "203.0.113.7:5555"},
		{"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 5555 443\r\n", "[2001:db8::1]:5555"},
		{"v1 unknown", "PROXY UNKNOWN\r\n", ""},
		{"v1 family mismatch", "PROXY TCP4 2001:db8::1 10.0.0.1 5555 80\r\n", "err"},
		{"v1 bad port", "PROXY TCP4 203.0.113.7 10.0.0.1 99999 80\r\n", "err"},
		{"v1 destination family mismatch", "PROXY TCP4 203.0.113.7 2001:db8::1 5555 80\r\n", "err"},
		{"v1 destination port leading zero", "PROXY TCP4 203.0.113.7 10.0.0.1 5555 080\r\n", "err"},
		{"v1 destination zone", "PROXY TCP6 2001:db8::7 fe80::1%eth0 5555 80\r\n", "err"},
		{"v1 bare LF", "PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\n", "err"},
		{"v1 too long", "PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n", "err"},
		{"not proxy", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "err"},
		{"v2 tcp4", proxyV2(1, 0x11, v4), "203.0.113.7:5555"},
		{"v2 local", proxyV2(0, 0x00, nil), ""},
		{"v2 short", proxyV2(1, 0x11, v4[:6]), "err"},
		{"v2 bad command", proxyV2(2, 0x11, v4), "err"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			br := bufio.NewReaderSize(strings.NewReader(c.in+"REST"), 512)
			src, ok, err := readProxyHeader(br)
			switch {
			case c.src == "err":
				if err == nil {
					t.Fatalf("accepted: %v %v", src, ok)
				}
				return
			case err != nil:
				t.Fatal(err)
			case c.src == "" && ok, c.src != "" && (!ok || src != netip.MustParseAddrPort(c.src)):
				t.Fatalf("got %v %v, want %q", src, ok, c.src)
			}
			if rest, _ := io.ReadAll(br); string(rest) != "REST" {
				t.Fatalf("bytes after the header: %q", rest)
			}
		})
	}
}

// FuzzProxyHeader: arbitrary bytes never panic, and a header read never consumes more than
// the v1 or v2 maximum.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\nGET /"))
	f.Add([]byte(proxyV2(1, 0x21, make([]byte, 36))))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := strings.NewReader(string(in))
		br := bufio.NewReaderSize(r, 512)
		if _, _, err := readProxyHeader(br); err != nil {
			return
		}
		consumed := len(in) - br.Buffered() - r.Len()
		if consumed > 16+2048 {
			t.Fatalf("consumed %d bytes", consumed)
		}
	})
}

func TestProxyProtocolListener(t *testing.T) {
	t.Parallel()
	h := Hygiene{ClientIP: httpx.SourceProxyProtocol, Trusted: trust(t, "127.0.0.1/32")}
	_, rc, addr := startServer(t, h)
	got := codes(rawExchange(t, addr, "PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\nGET /p HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nConnection: close\r\n\r\n"))
	if got != "200 " {
		t.Fatalf("responses %s", got)
	}
	s := rc.all()[0]
	if s.ex.ClientIP.String() != "203.0.113.7" || s.header.Get("X-Forwarded-For") != "" {
		t.Fatalf("client %s, XFF %q", s.ex.ClientIP, s.header.Get("X-Forwarded-For"))
	}
	// A header is required: plain HTTP on a PROXY listener is cut.
	if got := rawExchange(t, addr, "GET /p HTTP/1.1\r\nHost: x\r\n\r\n"); len(got) != 0 {
		t.Fatalf("a request without a PROXY header got %s", codes(got))
	}
	// Only trusted peers may speak PROXY.
	_, rc2, addr2 := startServer(t, Hygiene{ClientIP: httpx.SourceProxyProtocol})
	if got := rawExchange(t, addr2, "PROXY TCP4 203.0.113.7 10.0.0.1 5555 80\r\nGET /p HTTP/1.1\r\nHost: x\r\n\r\n"); len(got) != 0 || len(rc2.all()) != 0 {
		t.Fatalf("an untrusted peer's PROXY header was accepted: %s", codes(got))
	}
}
