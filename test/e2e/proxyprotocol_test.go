package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proxyProtocolConfig has two listeners that read PROXY headers: "lb" trusts the test's own
// address (the load balancer is the test), "other" trusts only a network the test is not on.
const proxyProtocolConfig = `
listeners:
  - name: lb
    addr: 127.0.0.1:0
    client_ip: { source: proxy_protocol, trusted_proxies: [127.0.0.1/32] }
  - name: other
    addr: 127.0.0.1:0
    client_ip: { source: proxy_protocol, trusted_proxies: [192.0.2.0/24] }
upstreams:
  app: { targets: [{ url: "{{.app}}" }] }
routes:
  - name: all
    match: { path: "/{p...}" }
    upstream: app
    policies:
      - request_headers: { set: { X-Client-IP: "{client_ip}" } }
      - response_headers: { set: { X-Gateway-Client-IP: "{client_ip}" } }
`

// recording is a backend that remembers the path of every request it receives and echoes the
// request headers (as echo does), so a test can tell exactly what reached it.
type recording struct {
	mu    sync.Mutex
	paths []string
}

func (b *recording) handler(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.paths = append(b.paths, r.URL.Path)
	b.mu.Unlock()
	echo("app")(w, r)
}

func (b *recording) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.paths)
}

// proxyGateway starts a gateway with proxyProtocolConfig in front of a recording backend.
func proxyGateway(t *testing.T) (*gw, *recording) {
	t.Helper()
	b := &recording{}
	app := backend(t, b.handler)
	return start(t, proxyProtocolConfig, map[string]any{"app": app.URL}), b
}

// proxyV2 builds a binary PROXY v2 header (HAProxy proxy-protocol.txt §2.2): the 12-byte
// signature, version 2 and the command, the family and transport, the length of what follows,
// then the addresses and ports (source first) and any TLVs.
func proxyV2(verCmd, fam byte, src, dst netip.AddrPort, tlvs []byte) []byte {
	var body []byte
	if src.IsValid() {
		body = append(body, src.Addr().AsSlice()...)
		body = append(body, dst.Addr().AsSlice()...)
		body = binary.BigEndian.AppendUint16(body, src.Port())
		body = binary.BigEndian.AppendUint16(body, dst.Port())
	}
	body = append(body, tlvs...)
	h := []byte("\r\n\r\n\x00\r\nQUIT\n")
	h = append(h, verCmd, fam)
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

// proxyV2Raw builds a v2 header whose length field is n whatever the body is.
func proxyV2Raw(verCmd, fam byte, n uint16, body []byte) []byte {
	h := []byte("\r\n\r\n\x00\r\nQUIT\n")
	h = append(h, verCmd, fam)
	h = binary.BigEndian.AppendUint16(h, n)
	return append(h, body...)
}

func httpGet(path string, extra ...string) string {
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\nHost: api.example.com\r\n")
	for i := 0; i+1 < len(extra); i += 2 {
		b.WriteString(extra[i] + ": " + extra[i+1] + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// proxied opens a connection to addr, writes header and then each request in turn, and returns
// the responses (bodies read) in order. The header and the first request are separate writes.
func proxied(t *testing.T, addr string, header []byte, requests ...string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(header); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for _, req := range requests {
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read response after PROXY header %q: %v", header, err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		out = append(out, resp)
	}
	return out
}

// refused sends data on a fresh connection and requires the gateway to close it without
// writing a byte: the server drops a connection whose PROXY header is missing, malformed or
// from an untrusted peer (internal/server/listener.go, prepare). Depending on whether the
// server read what was sent before closing, the close shows as EOF or as a reset; a timeout
// means the connection was left open and fails the test.
func refused(t *testing.T, addr string, data []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(data); err != nil && !isConnReset(err) {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if len(got) > 0 {
		t.Fatalf("after %q the gateway answered %q, want the connection closed without a response", data, got)
	}
	if err != nil && !isConnReset(err) {
		t.Fatalf("after %q: %v, want the connection closed", data, err)
	}
}

// isConnReset reports whether err is the peer resetting the connection (reading) or having
// closed it (writing): how a close with unread data shows up.
func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func TestProxyProtocolClientAddress(t *testing.T) {
	t.Parallel()
	x, b := proxyGateway(t)
	addr := x.addr("lb")
	v4src := netip.MustParseAddrPort("203.0.113.7:5555")
	v4dst := netip.MustParseAddrPort("10.0.0.1:8080")
	v6src := netip.MustParseAddrPort("[2001:db8::7]:5555")
	v6dst := netip.MustParseAddrPort("[2001:db8::1]:8080")
	// PP2_TYPE_AUTHORITY "api.example.com" and PP2_TYPE_NOOP: TLVs after the addresses are
	// skipped.
	tlvs := append([]byte{0x02, 0x00, 0x0f}, "api.example.com"...)
	tlvs = append(tlvs, 0x04, 0x00, 0x02, 0x00, 0x00)

	for _, tc := range []struct {
		name   string
		header []byte
		ip     string // the client IP the gateway must use
		fwd    string // its Forwarded for= node
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080\r\n"), "203.0.113.7", "203.0.113.7"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 5555 8080\r\n"), "2001:db8::7", `"[2001:db8::7]"`},
		{"v2 TCP4", proxyV2(0x21, 0x11, v4src, v4dst, nil), "203.0.113.7", "203.0.113.7"},
		{"v2 TCP6", proxyV2(0x21, 0x21, v6src, v6dst, nil), "2001:db8::7", `"[2001:db8::7]"`},
		{"v2 TCP4 with TLVs", proxyV2(0x21, 0x11, v4src, v4dst, tlvs), "203.0.113.7", "203.0.113.7"},
		// A header without an address (the balancer's own health check) keeps the TCP peer.
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "127.0.0.1", "127.0.0.1"},
		{"v2 LOCAL", proxyV2(0x20, 0x00, netip.AddrPort{}, netip.AddrPort{}, nil), "127.0.0.1", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Two requests on the connection: the address belongs to the connection, not to
			// its first request. When the header carries an address, the client's own
			// forwarding headers come from that address, which is not a trusted proxy, so
			// they are dropped. (Without one the peer is the trusted balancer itself, whose
			// forwarding headers are believed and extended like any trusted proxy's.)
			path := "/client/" + strings.ReplaceAll(tc.name, " ", "-")
			var spoof []string
			if tc.ip != "127.0.0.1" {
				spoof = []string{"X-Forwarded-For", "198.51.100.1", "Forwarded", "for=198.51.100.1", "X-Client-IP", "198.51.100.1"}
			}
			resps := proxied(t, addr, tc.header, httpGet(path+"/1", spoof...), httpGet(path+"/2"))
			for i, resp := range resps {
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Backend") != "app" {
					t.Fatalf("request %d: status %d from %q, want 200 from the backend", i+1, resp.StatusCode, resp.Header.Get("X-Backend"))
				}
				for _, h := range []struct{ name, want string }{
					{"X-Seen-X-Forwarded-For", tc.ip},
					{"X-Seen-Forwarded", "for=" + tc.fwd + `;host="api.example.com";proto=http`},
					{"X-Seen-X-Client-Ip", tc.ip},  // request_headers {client_ip}
					{"X-Gateway-Client-Ip", tc.ip}, // response_headers {client_ip}
					{"X-Seen-X-Forwarded-Proto", "http"},
				} {
					if got := resp.Header.Values(h.name); len(got) != 1 || got[0] != h.want {
						t.Errorf("request %d: %s = %q, want %q", i+1, h.name, got, h.want)
					}
				}
			}
		})
	}
	t.Cleanup(func() {
		// Every request above reached the backend exactly once.
		if n := len(b.seen()); n != 2*7 {
			t.Errorf("backend saw %d requests, want %d", n, 2*7)
		}
	})
}

// TestProxyProtocolHeaderInPieces sends the header a few bytes at a time: the server must wait
// for all of it, not parse the first segment.
func TestProxyProtocolHeaderInPieces(t *testing.T) {
	t.Parallel()
	x, _ := proxyGateway(t)
	for _, tc := range []struct {
		name   string
		header []byte
	}{
		{"v1", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080\r\n")},
		{"v2", proxyV2(0x21, 0x11, netip.MustParseAddrPort("203.0.113.7:5555"), netip.MustParseAddrPort("10.0.0.1:8080"), nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", x.addr("lb"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetNoDelay(true)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			for p := tc.header; len(p) > 0; {
				n := min(5, len(p))
				if _, err := c.Write(p[:n]); err != nil {
					t.Fatal(err)
				}
				p = p[n:]
			}
			if _, err := io.WriteString(c, httpGet("/pieces")); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Seen-X-Forwarded-For"); resp.StatusCode != http.StatusOK || got != "203.0.113.7" {
				t.Fatalf("status %d, X-Forwarded-For %q; want 200 and 203.0.113.7", resp.StatusCode, got)
			}
		})
	}
}

// TestProxyProtocolRefused covers connections the server must drop before HTTP: no header at
// all, a malformed header, and any connection on a listener that does not trust the peer.
// After each refusal a good connection to the trusted listener is a barrier: the backend must
// have seen that request and nothing from the refused ones.
func TestProxyProtocolRefused(t *testing.T) {
	t.Parallel()
	v4src := netip.MustParseAddrPort("203.0.113.7:5555")
	v4dst := netip.MustParseAddrPort("10.0.0.1:8080")
	req := httpGet("/refused")
	for _, tc := range []struct {
		name     string
		listener string
		data     []byte
	}{
		// (c) A trusted peer that does not send a header.
		{"no header", "lb", []byte(req)},
		{"no header, POST", "lb", []byte("POST /refused HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")},
		{"TLS client hello instead of a header", "lb", append([]byte{0x16, 0x03, 0x01, 0x00, 0x2f, 0x01}, make([]byte, 64)...)},
		{"header after the request", "lb", []byte(req + "PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080\r\n")},

		// (e) Malformed v1 headers.
		{"v1 address out of range", "lb", []byte("PROXY TCP4 999.1.1.1 10.0.0.1 5555 8080\r\n" + req)},
		{"v1 IPv6 source in TCP4", "lb", []byte("PROXY TCP4 2001:db8::7 10.0.0.1 5555 8080\r\n" + req)},
		{"v1 IPv4 source in TCP6", "lb", []byte("PROXY TCP6 203.0.113.7 2001:db8::1 5555 8080\r\n" + req)},
		{"v1 bad destination", "lb", []byte("PROXY TCP4 203.0.113.7 10.0.0.x 5555 8080\r\n" + req)},
		{"v1 missing port", "lb", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555\r\n" + req)},
		{"v1 extra field", "lb", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080 9\r\n" + req)},
		{"v1 port out of range", "lb", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 65536 8080\r\n" + req)},
		{"v1 port with leading zero", "lb", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 05555 8080\r\n" + req)},
		{"v1 unknown protocol", "lb", []byte("PROXY UDP4 203.0.113.7 10.0.0.1 5555 8080\r\n" + req)},
		{"v1 lowercase", "lb", []byte("proxy TCP4 203.0.113.7 10.0.0.1 5555 8080\r\n" + req)},
		{"v1 double space", "lb", []byte("PROXY  TCP4 203.0.113.7 10.0.0.1 5555 8080\r\n" + req)},
		{"v1 LF without CR", "lb", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080\n" + req)},
		{"v1 longer than 107 bytes", "lb", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080" + strings.Repeat(" ", 80) + "\r\n" + req)},
		{"v1 zone in address", "lb", []byte("PROXY TCP6 fe80::1%eth0 2001:db8::1 5555 8080\r\n" + req)},

		// (e) Malformed v2 headers.
		{"v2 version 1", "lb", append(proxyV2(0x11, 0x11, v4src, v4dst, nil), req...)},
		{"v2 unknown command", "lb", append(proxyV2(0x22, 0x11, v4src, v4dst, nil), req...)},
		{"v2 TCP4 body too short", "lb", append(proxyV2Raw(0x21, 0x11, 8, make([]byte, 8)), req...)},
		{"v2 TCP6 body too short", "lb", append(proxyV2Raw(0x21, 0x21, 12, make([]byte, 12)), req...)},
		{"v2 length over the limit", "lb", append(proxyV2Raw(0x21, 0x11, 4096, make([]byte, 4096)), req...)},

		// (d) The peer is not a trusted proxy: a valid header is not honoured, and the
		// connection is closed before anything is read, so the claimed address is never used.
		{"untrusted peer, v1", "other", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080\r\n" + req)},
		{"untrusted peer, v2", "other", append(proxyV2(0x21, 0x11, v4src, v4dst, nil), req...)},
		{"untrusted peer, v1 UNKNOWN", "other", []byte("PROXY UNKNOWN\r\n" + req)},
		{"untrusted peer, no header", "other", []byte(req)},
		{"untrusted peer, spoofed X-Forwarded-For", "other", []byte(httpGet("/refused", "X-Forwarded-For", "203.0.113.7"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			x, b := proxyGateway(t)
			refused(t, x.addr(tc.listener), tc.data)

			// The gateway keeps serving well-formed connections after a refusal.
			resps := proxied(t, x.addr("lb"), []byte("PROXY TCP4 203.0.113.8 10.0.0.1 5555 8080\r\n"), httpGet("/ok"))
			if got := resps[0].Header.Get("X-Seen-X-Forwarded-For"); resps[0].StatusCode != http.StatusOK || got != "203.0.113.8" {
				t.Fatalf("good connection after the refusal: status %d, X-Forwarded-For %q", resps[0].StatusCode, got)
			}
			if got := b.seen(); !slices.Equal(got, []string{"/ok"}) {
				t.Fatalf("backend saw %q, want only the good request [/ok]", got)
			}
		})
	}
}

// TestProxyProtocolHeaderOnce checks that only the first bytes of a connection are a PROXY
// header: a second header after it is the start of an HTTP request, which is malformed, so the
// client gets 400 and the backend sees nothing.
func TestProxyProtocolHeaderOnce(t *testing.T) {
	t.Parallel()
	x, b := proxyGateway(t)
	hdr := "PROXY TCP4 203.0.113.7 10.0.0.1 5555 8080\r\n"
	c, err := net.Dial("tcp", x.addr("lb"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, hdr+hdr+httpGet("/twice")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	if got := b.seen(); len(got) != 0 {
		t.Fatalf("backend saw %q, want nothing", got)
	}
}
