package server

import (
	"bytes"
	"strings"
	"testing"
)

// feedAll runs input through a fresh guard in pieces of at most split bytes (0: one piece) and
// returns the guard and every header block it released.
func feedAll(in []byte, split int, h2c bool) (*guardConn, [][]byte) {
	g := newGuardConn(nil, 4096, h2c)
	var blocks [][]byte
	g.onRelease = func(b []byte) { blocks = append(blocks, append([]byte(nil), b...)) }
	if split <= 0 {
		split = len(in) + 1
	}
	for len(in) > 0 {
		n := min(split, len(in))
		g.feed(in[:n])
		in = in[n:]
	}
	return g, blocks
}

func TestGuardUnit(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in, reason, out string
	}{
		{"get passes", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"leading CRLF dropped", "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", "", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"CL body then next", "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n", "", "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n"},
		{"CL and TE", "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", codeAmbiguous, ""},
		{"TE and CL", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-length: 3\r\n\r\n", codeAmbiguous, ""},
		{"duplicate equal CL", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", codeDuplicateCL, ""},
		{"CL list", "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc", codeBadCL, ""},
		{"CL sign", "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc", codeBadCL, ""},
		{"TE chunked, identity", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", codeTE, ""},
		{"TE xchunked", "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", codeTE, ""},
		{"TE twice", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", codeTE, ""},
		{"TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", codeTE, ""},
		{"obs-fold", "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", codeObsFold, ""},
		{"bare LF", "GET / HTTP/1.1\nHost: x\n\n", codeBareLF, ""},
		{"bare LF in field", "GET / HTTP/1.1\r\nHost: x\n\r\n", codeBareLF, ""},
		{"bare LF end", "GET / HTTP/1.1\r\nHost: x\r\n\n", codeBareLF, ""},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", codeFieldNameWS, ""},
		{"no colon", "GET / HTTP/1.1\r\nHost x\r\n\r\n", codeBadField, ""},
		{"chunked with ext and trailer", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n", "", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n"},
		{"bad chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", codeBadChunk, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n"},
		{"chunk without CRLF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n", codeBadChunk, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloxx"},
		{"chunk bare LF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", codeBadChunk, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n"},
		{"trailer fold", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\n 2\r\n\r\n", codeBadChunk, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nx\r\n\r\n"},
		{"chunk size overflow", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", codeBadChunk, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n"},
		{"upgrade holds the rest", "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\nGET /x HTTP/1.1\r\n\r\n", "", "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n"},
		{"h2c preface refused", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "", "PRI * HTTP/2.0\r\n\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, split := range []int{0, 1, 7} {
				g, _ := feedAll([]byte(c.in), split, false)
				if g.reason != c.reason {
					t.Fatalf("split %d: reason %q, want %q", split, g.reason, c.reason)
				}
				out := string(g.out)
				if c.reason != "" && c.reason != codeBadChunk {
					if !strings.HasPrefix(out, "GET "+rejectPathPrefix+g.nonce+" HTTP/1.1\r\n") {
						t.Fatalf("split %d: no synthetic request: %q", split, out)
					}
					continue
				}
				if out != c.out {
					t.Fatalf("split %d: out %q, want %q", split, out, c.out)
				}
			}
		})
	}
}

func TestGuardUpgradeOutcome(t *testing.T) {
	t.Parallel()
	const up = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	const next = "POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	// Refused upgrade: the held bytes are parsed as HTTP/1 and the smuggling attempt rejected.
	g, _ := feedAll([]byte(up+next), 0, false)
	g.connState(connIdle)
	g.feed(nil)
	data := g.held
	g.held = nil
	g.feed(data)
	if g.reason != codeAmbiguous {
		t.Fatalf("after a refused upgrade: reason %q", g.reason)
	}
	// Accepted upgrade: the held bytes belong to the new protocol and pass untouched.
	g, _ = feedAll([]byte(up+"\x81\x05hello"), 0, false)
	g.connState(connHijacked)
	if got := string(g.out); got != up+"\x81\x05hello" || g.st != stPassthrough {
		t.Fatalf("after hijack: %q", got)
	}
}

func TestGuardHeaderTooLarge(t *testing.T) {
	t.Parallel()
	g, _ := feedAll([]byte("GET / HTTP/1.1\r\nX: "+strings.Repeat("a", 9000)+"\r\n\r\n"), 100, false)
	if g.reason != codeHeaderTooBig {
		t.Fatalf("reason %q", g.reason)
	}
}

// FuzzFramingGuard feeds arbitrary bytes, whole and in pieces: the guard never panics, the
// pieces give the same stream as the whole, and no released header block is ambiguous.
func FuzzFramingGuard(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), uint16(1))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), uint16(2))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), uint16(5))
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		whole, blocks := feedAll(in, 0, split%2 == 0)
		pieces, _ := feedAll(in, int(split%61)+1, split%2 == 0)
		wo := bytes.ReplaceAll(whole.out, []byte(whole.nonce), []byte("N"))
		po := bytes.ReplaceAll(pieces.out, []byte(pieces.nonce), []byte("N"))
		if !bytes.Equal(wo, po) || whole.reason != pieces.reason {
			t.Fatalf("split-dependent result: %q (%q) vs %q (%q)", whole.out, whole.reason, pieces.out, pieces.reason)
		}
		for _, b := range blocks {
			if bytes.HasPrefix(b, []byte("PRI * HTTP/2.0\r\n")) {
				continue
			}
			var cl, te int
			lines := strings.Split(string(b), "\r\n")
			if len(lines) < 3 || lines[len(lines)-1] != "" || lines[len(lines)-2] != "" {
				t.Fatalf("released block does not end with CRLFCRLF: %q", b)
			}
			for _, l := range lines[1 : len(lines)-2] {
				if l == "" || l[0] == ' ' || l[0] == '\t' || strings.ContainsRune(l, '\n') {
					t.Fatalf("released block with a bad line %q: %q", l, b)
				}
				name, _, _ := strings.Cut(l, ":")
				switch strings.ToLower(name) {
				case "content-length":
					cl++
				case "transfer-encoding":
					te++
				}
			}
			if cl > 0 && te > 0 || cl > 1 || te > 1 {
				t.Fatalf("ambiguous block released: %q", b)
			}
		}
	})
}

// loopConn returns the same request bytes forever.
type loopConn struct {
	netConnStub
	data []byte
	pos  int
}

func (c *loopConn) Read(p []byte) (int, error) {
	n := copy(p, c.data[c.pos:])
	c.pos = (c.pos + n) % len(c.data)
	return n, nil
}

const benchGET = "GET /api/v1/users/42?expand=groups HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench/1.0 (linux; amd64)\r\n" +
	"Accept: application/json\r\nAccept-Encoding: gzip, br\r\nX-Request-ID: 0123456789abcdef0123456789abcdef\r\n" +
	"Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789\r\nConnection: keep-alive\r\n\r\n"

func benchChunked() string {
	var b strings.Builder
	b.WriteString("POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
	for range 8 {
		b.WriteString("400\r\n" + strings.Repeat("z", 1024) + "\r\n")
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

func BenchmarkFramingGuard(b *testing.B) {
	for _, bc := range []struct{ name, req string }{{"get", benchGET}, {"chunked_post", benchChunked()}} {
		b.Run("feed/"+bc.name, func(b *testing.B) {
			g := newGuardConn(nil, 1<<16, false)
			req := []byte(bc.req)
			b.ReportAllocs()
			b.SetBytes(int64(len(req)))
			for b.Loop() {
				g.feed(req)
				g.out, g.outPos = g.out[:0], 0
			}
			if g.reason != "" {
				b.Fatal(g.reason)
			}
		})
		b.Run("read/"+bc.name, func(b *testing.B) {
			g := newGuardConn(&loopConn{data: []byte(bc.req)}, 1<<16, false)
			buf := make([]byte, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.req)))
			for b.Loop() {
				for n := 0; n < len(bc.req); {
					m, err := g.Read(buf)
					if err != nil {
						b.Fatal(err)
					}
					n += m
				}
			}
		})
	}
}
