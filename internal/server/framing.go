package server

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
)

// guardConn checks the HTTP/1 byte stream it hands to net/http, request by request, so the server
// only ever parses whole, unambiguous requests (DESIGN.md "Framing"; RFC 9112 §6.1, §5.2, §2.2).
// net/http alone accepts a request with both Content-Length and Transfer-Encoding and keeps the
// connection open, accepts obsolete line folding and bare LF.
//
// A header block is held back until it is complete and checked. A bad one is replaced by a
// synthetic request for a per-connection random path, followed by EOF: net/http serves it in
// order (earlier pipelined responses are undisturbed), the hygiene handler recognizes the path
// and answers 400 with Connection: close. A bad chunked body ends the stream early, so the body
// read fails and the request is answered 400.
type guardConn struct {
	net.Conn
	maxHeader int

	mu     sync.Mutex // Read may race with Close's bookkeeping via the background reader
	buf    []byte
	out    []byte // bytes ready for net/http, from outPos
	outPos int
	hdr    []byte
	line   []byte
	st     parseState
	remain int64
	end    bool  // no more bytes will be passed on
	err    error // the underlying read error, returned once out is drained

	nonce  string
	reason string // why the connection was rejected
	tls    any    // *tls.ConnectionState when the conn came from the TLS listener
	closed func() // called once on Close (hijacked-connection bookkeeping)
}

func (g *guardConn) onClose(f func()) {
	g.mu.Lock()
	g.closed = f
	g.mu.Unlock()
}

// Close closes the connection and runs the close hook.
func (g *guardConn) Close() error {
	g.mu.Lock()
	f := g.closed
	g.closed = nil
	g.mu.Unlock()
	if f != nil {
		f()
	}
	return g.Conn.Close()
}

type parseState uint8

const (
	stHeader parseState = iota
	stBody
	stChunkSize
	stChunkData
	stChunkCRLF
	stTrailer
	stPassthrough
)

// Reject reasons, used as problem codes.
const (
	rejectAmbiguous  = "ambiguous_framing"
	rejectObsFold    = "obsolete_line_folding"
	rejectBareLF     = "bad_line_ending"
	rejectFieldName  = "bad_header_name"
	rejectTE         = "unsupported_transfer_encoding"
	rejectDuplicates = "duplicate_content_length"
)

const maxChunkLine = 4096

func newGuardConn(c net.Conn, maxHeader int) *guardConn {
	if maxHeader <= 0 {
		maxHeader = 64 << 10
	}
	return &guardConn{Conn: c, maxHeader: maxHeader + 4096, buf: make([]byte, 4096)}
}

// rejectPath is the synthetic request path for this connection.
func (g *guardConn) rejectPath() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reason == "" {
		return ""
	}
	return "/.limen-reject-" + g.nonce
}

func (g *guardConn) rejection() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reason
}

func (g *guardConn) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		if g.outPos < len(g.out) {
			n := copy(p, g.out[g.outPos:])
			g.outPos += n
			if g.outPos == len(g.out) {
				g.out, g.outPos = g.out[:0], 0 // keep the capacity: steady state allocates nothing
			}
			return n, nil
		}
		if g.err != nil {
			return 0, g.err
		}
		if g.end {
			return 0, io.EOF
		}
		if g.st == stPassthrough {
			g.mu.Unlock()
			n, err := g.Conn.Read(p)
			g.mu.Lock()
			return n, err
		}
		g.mu.Unlock()
		n, err := g.Conn.Read(g.buf)
		g.mu.Lock()
		if n > 0 {
			g.feed(g.buf[:n])
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Deadlines are transient: net/http's background read sets one to wake itself.
				if g.outPos < len(g.out) {
					continue
				}
				return 0, err
			}
			// Whatever was held back goes to net/http, which will report it as it sees fit.
			g.out = append(g.out, g.hdr...)
			g.hdr = g.hdr[:0]
			g.err = err
		}
	}
}

func (g *guardConn) feed(data []byte) {
	for len(data) > 0 && !g.end {
		switch g.st {
		case stPassthrough:
			g.out = append(g.out, data...)
			return
		case stHeader:
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				g.hdr = append(g.hdr, data...)
				if len(g.hdr) > g.maxHeader {
					// Too large for us to hold: let net/http answer 431.
					g.out = append(g.out, g.hdr...)
					g.hdr = g.hdr[:0]
					g.st = stPassthrough
				}
				return
			}
			lineStart := len(g.hdr)
			g.hdr = append(g.hdr, data[:i+1]...)
			data = data[i+1:]
			line := g.hdr[lineStart:]
			if lineStart == 0 && (len(line) == 2 && line[0] == '\r') {
				// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request.
				g.out = append(g.out, line...)
				g.hdr = g.hdr[:0]
				continue
			}
			if len(line) <= 2 && lineStart > 0 {
				if len(line) == 1 || line[0] != '\r' {
					g.reject(rejectBareLF)
					return
				}
				g.checkHeader()
			}
		case stBody, stChunkData:
			n := int64(len(data))
			if n > g.remain {
				n = g.remain
			}
			g.out = append(g.out, data[:n]...)
			data = data[n:]
			g.remain -= n
			if g.remain == 0 {
				if g.st == stBody {
					g.st = stHeader
				} else {
					g.st = stChunkCRLF
				}
			}
		case stChunkSize, stChunkCRLF, stTrailer:
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				g.line = append(g.line, data...)
				g.out = append(g.out, data...)
				if len(g.line) > maxChunkLine {
					g.cut()
				}
				return
			}
			g.line = append(g.line, data[:i+1]...)
			g.out = append(g.out, data[:i+1]...)
			data = data[i+1:]
			line := g.line
			g.line = g.line[:0]
			if len(line) < 2 || line[len(line)-2] != '\r' {
				g.cut()
				return
			}
			switch g.st {
			case stChunkCRLF:
				if len(line) != 2 {
					g.cut()
					return
				}
				g.st = stChunkSize
			case stChunkSize:
				size, ok := parseChunkSize(line[:len(line)-2])
				if !ok {
					g.cut()
					return
				}
				if size == 0 {
					g.st = stTrailer
				} else {
					g.remain, g.st = size, stChunkData
				}
			case stTrailer:
				if len(line) == 2 {
					g.st = stHeader
				} else if line[0] == ' ' || line[0] == '\t' {
					g.cut()
					return
				}
			}
		}
	}
}

// checkHeader validates a complete header block in g.hdr and decides how the body is framed.
func (g *guardConn) checkHeader() {
	block := g.hdr
	first := bytes.IndexByte(block, '\n')
	reqLine := block[:first+1]
	if bytes.HasPrefix(reqLine, []byte("PRI * HTTP/2.0")) {
		// The HTTP/2 connection preface (h2c prior knowledge): not HTTP/1 from here on.
		g.release(stPassthrough)
		return
	}
	if len(reqLine) < 2 || reqLine[len(reqLine)-2] != '\r' {
		g.reject(rejectBareLF)
		return
	}
	var clCount, teCount int
	var cl int64 = -1
	var chunkedLast, upgrade, connUpgrade bool
	rest := block[first+1:]
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i+1]
		rest = rest[i+1:]
		if len(line) == 2 {
			break // the empty line
		}
		if len(line) < 2 || line[len(line)-2] != '\r' {
			g.reject(rejectBareLF)
			return
		}
		if line[0] == ' ' || line[0] == '\t' {
			g.reject(rejectObsFold)
			return
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return // net/http rejects malformed lines itself
		}
		name := line[:colon]
		if name[len(name)-1] == ' ' || name[len(name)-1] == '\t' {
			g.reject(rejectFieldName)
			return
		}
		value := bytes.TrimSpace(line[colon+1 : len(line)-2])
		switch {
		case asciiEqualFold(name, "content-length"):
			clCount++
			if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n >= 0 {
				cl = n
			}
		case asciiEqualFold(name, "transfer-encoding"):
			teCount++
			codings := bytes.Split(value, []byte(","))
			chunkedLast = asciiEqualFold(bytes.TrimSpace(codings[len(codings)-1]), "chunked")
		case asciiEqualFold(name, "upgrade"):
			upgrade = true
		case asciiEqualFold(name, "connection"):
			for _, tok := range bytes.Split(value, []byte(",")) {
				if asciiEqualFold(bytes.TrimSpace(tok), "upgrade") {
					connUpgrade = true
				}
			}
		}
	}
	switch {
	case clCount > 0 && teCount > 0:
		g.reject(rejectAmbiguous)
	case clCount > 1:
		g.reject(rejectDuplicates)
	case teCount > 1 || teCount == 1 && !chunkedLast:
		g.reject(rejectTE)
	case upgrade && connUpgrade || bytes.HasPrefix(reqLine, []byte("CONNECT ")):
		// After a protocol switch the bytes are not HTTP/1 any more.
		g.release(stPassthrough)
	case teCount == 1:
		g.release(stChunkSize)
	case cl > 0:
		g.remain = cl
		g.release(stBody)
	default:
		g.release(stHeader)
	}
}

func (g *guardConn) release(next parseState) {
	g.out = append(g.out, g.hdr...)
	g.hdr = g.hdr[:0]
	g.st = next
}

// reject drops the held header block and substitutes the synthetic request.
func (g *guardConn) reject(reason string) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	g.nonce = hex.EncodeToString(b[:])
	g.reason = reason
	g.hdr = g.hdr[:0]
	g.out = append(g.out, "GET /.limen-reject-"+g.nonce+" HTTP/1.1\r\nHost: limen\r\nConnection: close\r\n\r\n"...)
	g.end = true
}

// cut ends the stream inside a malformed chunked body: the body read fails with an unexpected
// EOF, which the proxy answers 400.
func (g *guardConn) cut() {
	g.end = true
}

func parseChunkSize(b []byte) (int64, bool) {
	if i := bytes.IndexByte(b, ';'); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimRight(b, " \t")
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(v)
	}
	return n, true
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
