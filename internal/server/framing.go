package server

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
)

// guardConn is the framing guard: a net.Conn wrapper that checks the HTTP/1 byte stream before
// net/http parses it, so the server only ever sees whole, unambiguous requests (DESIGN.md
// "Framing"; RFC 9112 §2.2, §5.1, §5.2, §6.1, §7.1). net/http on its own serves a request with
// both Content-Length and Transfer-Encoding and keeps the connection (the bytes after the chunked
// body become a new request), and accepts obsolete line folding and bare LF.
//
// The guard runs a small incremental state machine over the bytes it passes: a header block is
// held back until its empty line and checked line by line; its body is then passed by its
// framing (Content-Length bytes, or chunked: size lines, data, CRLF, last chunk, trailer fields),
// and then the next request (pipelining). Bytes are only passed once they are known good.
//
// A bad header block is never passed. In its place net/http gets a synthetic request for a
// per-connection random path, then EOF. Responses go out in order, so earlier pipelined requests
// are answered normally; the hygiene handler recognizes the path on this connection and answers
// 400 (431 for an oversized block) with Connection: close, never calling the dispatcher.
//
// A bad chunked body cannot be replaced by a request: net/http is reading a body. The guard
// passes bytes that make net/http's own chunked reader fail ("x\r\n" for a size line), then EOF,
// so the handler's body read returns an error (the proxy answers 400) and net/http closes the
// connection. A read error from the connection itself would instead cancel the request's context.
//
// After a request that asks for a protocol switch (Upgrade with Connection: upgrade, or CONNECT),
// later bytes are held unparsed until the request's outcome is known: if the handler hijacks the
// connection they pass as they are (they belong to the new protocol); if the response is an
// ordinary one (StateIdle) they are parsed as the next HTTP/1 request. A refused upgrade can
// therefore not carry an unchecked request.
type guardConn struct {
	net.Conn
	h2c       bool       // pass the HTTP/2 prior-knowledge preface through (listener has h2c)
	peer      netip.Addr // the TCP peer, parsed once for the hygiene of every request
	maxHeader int        // largest header block (or trailer section) the guard holds

	mu     sync.Mutex // Read runs on net/http's goroutines; the handler and ConnState read state
	st     parseState
	after  parseState // state once the current body ends: stHeader, or stUpgrade
	remain int64      // bytes left in the Content-Length body or the current chunk
	line   []byte     // the header block or chunk line being held
	cur    int        // where the incomplete line of the held header block starts in line
	out    []byte     // checked bytes ready for net/http, from outPos
	outPos int
	held   []byte // bytes read while an upgrade decision is pending, not yet parsed
	rbuf   []byte
	end    bool  // nothing more passes: EOF after out drains
	err    error // sticky read error of the underlying conn, returned once out drains

	// Facts about the header block being read, reset per block.
	first      bool // the next line is a request line
	clCount    int
	teCount    int
	cl         int64
	teChunked  bool
	upgrade    bool
	connUpg    bool
	connect    bool
	pri        bool
	http10     bool
	trailerLen int

	reason   string // why the stream was rejected (a problem code); "" while all is well
	nonce    string
	hijacked bool
	onClose  func()

	// onRelease, when set (tests and the fuzzer), sees every header block the guard passes.
	onRelease func(block []byte)
}

type parseState uint8

const (
	stHeader parseState = iota
	stBody
	stChunkSize
	stChunkData
	stChunkCRLF
	stTrailer
	stUpgrade     // an upgrade request was passed: hold bytes until hijack or StateIdle
	stPassthrough // not HTTP/1 any more (hijacked, h2c)
)

// Problem codes of the framing guard.
const (
	codeAmbiguous     = "ambiguous_framing"
	codeDuplicateCL   = "duplicate_content_length"
	codeBadCL         = "bad_content_length"
	codeTE            = "unsupported_transfer_encoding"
	codeObsFold       = "obsolete_line_folding"
	codeBareLF        = "bad_line_ending"
	codeBadField      = "bad_header_field"
	codeFieldNameWS   = "whitespace_before_colon"
	codeHeaderTooBig  = "header_too_large"
	codeBadChunk      = "bad_chunk"
	codeUpgradeFlood  = "upgrade_flood"
	rejectPathPrefix  = "/.limen-reject-"
	maxChunkLine      = 4096    // net/http's own limit for a chunk-size line
	maxHeldUpgrade    = 1 << 20 // bytes a client may send before its upgrade is answered
	readBufferSize    = 4096
	defaultMaxHeaders = http1DefaultMaxHeaderBytes + 4096
)

// http1DefaultMaxHeaderBytes mirrors http.DefaultMaxHeaderBytes (net/http's limit when the
// listener sets none).
const http1DefaultMaxHeaderBytes = 1 << 20

func newGuardConn(c net.Conn, maxHeaderBytes int, h2c bool) *guardConn {
	limit := defaultMaxHeaders
	if maxHeaderBytes > 0 {
		// net/http allows MaxHeaderBytes plus 4096 bytes of slack for the request line.
		limit = maxHeaderBytes + 4096
	}
	g := &guardConn{Conn: c, maxHeader: limit, h2c: h2c, first: true, cl: -1}
	if c != nil {
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			g.peer = a.AddrPort().Addr().Unmap()
		}
	}
	return g
}

// tlsGuardConn is a guarded HTTP/1 connection over TLS. net/http fills Request.TLS from
// ConnectionState when the conn is not a *tls.Conn (server.go, connectionStater).
type tlsGuardConn struct {
	*guardConn
	state tls.ConnectionState
}

// ConnectionState returns the TLS state of the handshake the listener completed.
func (t *tlsGuardConn) ConnectionState() tls.ConnectionState { return t.state }

func (t *tlsGuardConn) guard() *guardConn { return t.guardConn }

func (g *guardConn) guard() *guardConn { return g }

// guarded is implemented by both guarded connection types.
type guarded interface{ guard() *guardConn }

func guardOf(c net.Conn) *guardConn {
	if g, ok := c.(guarded); ok {
		return g.guard()
	}
	return nil
}

// Close closes the connection and runs the close hook once (hijacked-connection bookkeeping).
func (g *guardConn) Close() error {
	g.mu.Lock()
	f := g.onClose
	g.onClose = nil
	g.mu.Unlock()
	if f != nil {
		f()
	}
	return g.Conn.Close()
}

// setOnClose installs the close hook; it reports false when the conn is already closed.
func (g *guardConn) setOnClose(f func()) {
	g.mu.Lock()
	g.onClose = f
	g.mu.Unlock()
}

// connState follows net/http's view of the connection. StateIdle means the request before was
// answered without a protocol switch; StateHijacked means the bytes now belong to the handler.
// net/http aborts its background read before either, so no Read is in flight.
func (g *guardConn) connState(st connStateKind) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch st {
	case connIdle:
		if g.st == stUpgrade {
			g.st = stHeader
		}
	case connHijacked:
		g.hijacked = true
		if g.st != stPassthrough {
			// Whatever was held (a pending upgrade's bytes, a partial next request) is the
			// hijacker's now, unparsed.
			g.out = append(g.out, g.line...)
			g.out = append(g.out, g.held...)
			g.line, g.cur, g.held = g.line[:0], 0, nil
			g.st = stPassthrough
		}
	}
}

type connStateKind uint8

const (
	connIdle connStateKind = iota
	connHijacked
)

// rejection reports the reason when requestURI is this connection's synthetic request.
func (g *guardConn) rejection(requestURI string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reason == "" || g.nonce == "" || requestURI != rejectPathPrefix+g.nonce {
		return ""
	}
	return g.reason
}

func (g *guardConn) wasHijacked() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hijacked
}

// Read hands net/http the checked stream.
func (g *guardConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		if g.outPos < len(g.out) {
			n := copy(p, g.out[g.outPos:])
			g.outPos += n
			if g.outPos == len(g.out) {
				g.out, g.outPos = g.out[:0], 0 // keep the capacity: no allocation per request
			}
			return n, nil
		}
		if g.err != nil {
			return 0, g.err
		}
		if g.end {
			return 0, io.EOF
		}
		if len(g.held) > 0 && g.st != stUpgrade {
			// A pending upgrade was answered without a switch: parse what it held.
			data := g.held
			g.held = nil
			g.feed(data)
			continue
		}
		// Body bytes of known length and passthrough go straight into p: no copy.
		if direct := g.directLimit(len(p)); direct > 0 {
			g.mu.Unlock()
			n, err := g.Conn.Read(p[:direct])
			g.mu.Lock()
			g.consumedDirect(n)
			return n, err
		}
		if g.rbuf == nil {
			g.rbuf = make([]byte, readBufferSize)
		}
		g.mu.Unlock()
		n, err := g.Conn.Read(g.rbuf)
		g.mu.Lock()
		if n > 0 {
			g.feed(g.rbuf[:n])
		}
		if err != nil {
			if isTimeout(err) {
				// Deadlines are transient: net/http sets one in the past to stop its
				// background read. Checked bytes still go out first.
				if g.outPos < len(g.out) {
					continue
				}
				return 0, err
			}
			// Held, unchecked bytes (a partial header block) are dropped with the stream.
			g.err = err
		}
	}
}

// directLimit is how many bytes Read may take from the conn straight into the caller's buffer.
func (g *guardConn) directLimit(n int) int {
	switch g.st {
	case stPassthrough:
		return n
	case stBody, stChunkData:
		if g.remain < int64(n) {
			return int(g.remain)
		}
		return n
	}
	return 0
}

func (g *guardConn) consumedDirect(n int) {
	switch g.st {
	case stBody:
		g.remain -= int64(n)
		if g.remain == 0 {
			g.endBody()
		}
	case stChunkData:
		g.remain -= int64(n)
		if g.remain == 0 {
			g.st = stChunkCRLF
		}
	}
}

// isTimeout runs for every request (net/http ends its background read with a past deadline), so
// the common *net.OpError is checked without errors.As, which reflects.
func isTimeout(err error) bool {
	if oe, ok := err.(*net.OpError); ok {
		return oe.Timeout()
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// feed runs the state machine over data, appending checked bytes to g.out.
func (g *guardConn) feed(data []byte) {
	for len(data) > 0 && !g.end {
		switch g.st {
		case stPassthrough:
			g.out = append(g.out, data...)
			return
		case stUpgrade:
			if len(g.held)+len(data) > maxHeldUpgrade {
				g.end = true
				g.reason = codeUpgradeFlood
				return
			}
			g.held = append(g.held, data...)
			return
		case stBody, stChunkData:
			n := len(data)
			if int64(n) > g.remain {
				n = int(g.remain)
			}
			g.out = append(g.out, data[:n]...)
			data = data[n:]
			g.consumedDirect(n)
		case stHeader:
			if len(g.line) == 0 {
				// Fast path: the block's lines are checked where they are; a block that is
				// complete within data is passed without being copied to the hold buffer.
				data = g.headerInPlace(data)
				continue
			}
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				g.line = append(g.line, data...)
				if len(g.line) > g.maxHeader {
					g.reject(codeHeaderTooBig)
				}
				return
			}
			g.line = append(g.line, data[:i+1]...)
			data = data[i+1:]
			switch g.headerLine(g.line[g.cur:], len(g.line)) {
			case lineSkip:
				g.line, g.cur = g.line[:0], 0
			case lineEnd:
				g.endHeader(g.line)
			case lineMore:
				g.cur = len(g.line)
			}
		default: // chunk-size line, CRLF after chunk data, trailer field
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				g.line = append(g.line, data...)
				if len(g.line) > maxChunkLine {
					g.badBody()
				}
				return
			}
			g.line = append(g.line, data[:i+1]...)
			data = data[i+1:]
			g.chunkLine()
		}
	}
}

// headerInPlace checks the header lines complete in data without copying them. It passes a
// block that ends within data, holds an incomplete one (its complete lines already checked) and
// returns the bytes after what it consumed.
func (g *guardConn) headerInPlace(data []byte) []byte {
	start, pos := 0, 0
	for {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			break
		}
		line := data[pos : pos+i+1]
		pos += i + 1
		switch g.headerLine(line, pos-start) {
		case lineSkip:
			start = pos
		case lineEnd:
			g.endHeader(data[start:pos])
			return data[pos:]
		case lineReject:
			return nil
		}
	}
	g.line = append(g.line, data[start:]...)
	g.cur = pos - start
	if len(g.line) > g.maxHeader {
		g.reject(codeHeaderTooBig)
	}
	return nil
}

type lineVerdict uint8

const (
	lineMore   lineVerdict = iota // a good line; the block goes on
	lineSkip                      // an empty line before the request line: dropped
	lineEnd                       // the empty line that ends the block
	lineReject                    // the block was rejected
)

// headerLine checks one complete line of a header block; blockLen is the block's size so far.
func (g *guardConn) headerLine(line []byte, blockLen int) lineVerdict {
	if blockLen > g.maxHeader {
		g.reject(codeHeaderTooBig)
		return lineReject
	}
	empty := len(line) == 2 && line[0] == '\r'
	if g.first {
		if empty {
			// RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request
			// (clients send one after a POST body). Dropped, never passed.
			return lineSkip
		}
		if !endsCRLF(line) {
			g.reject(codeBareLF)
			return lineReject
		}
		g.first = false
		g.requestLine(line[:len(line)-2])
		return lineMore
	}
	if empty {
		return lineEnd
	}
	if !endsCRLF(line) {
		g.reject(codeBareLF)
		return lineReject
	}
	if code := g.field(line[:len(line)-2]); code != "" {
		g.reject(code)
		return lineReject
	}
	return lineMore
}

func endsCRLF(line []byte) bool {
	// A CR anywhere else in a line is left to net/http, which rejects it in field values.
	return len(line) >= 2 && line[len(line)-2] == '\r' && line[len(line)-1] == '\n'
}

func (g *guardConn) requestLine(l []byte) {
	switch {
	case string(l) == "PRI * HTTP/2.0":
		g.pri = true
	case bytes.HasPrefix(l, []byte("CONNECT ")):
		g.connect = true
	}
	g.http10 = bytes.HasSuffix(l, []byte(" HTTP/1.0"))
}

// checkTrailer reports a malformed trailer field line (the header field rules).
func checkTrailer(l []byte) bool {
	colon := bytes.IndexByte(l, ':')
	return len(l) == 0 || l[0] == ' ' || l[0] == '\t' || colon <= 0 || l[colon-1] == ' ' || l[colon-1] == '\t'
}

// field checks a header field line (RFC 9112 §5.1, §5.2: no obs-fold, a colon, no whitespace
// before it) and records what it means for framing. Names are compared by length first so most
// fields cost one switch. It returns a problem code, or "".
func (g *guardConn) field(l []byte) string {
	if len(l) == 0 {
		return codeBadField
	}
	if l[0] == ' ' || l[0] == '\t' {
		return codeObsFold
	}
	colon := bytes.IndexByte(l, ':')
	switch {
	case colon <= 0:
		return codeBadField
	case l[colon-1] == ' ' || l[colon-1] == '\t':
		return codeFieldNameWS
	}
	name := l[:colon]
	switch len(name) {
	case 14:
		if asciiEqualFold(name, "content-length") {
			g.clCount++
			g.cl = parseDigits(trimOWS(l[colon+1:]))
		}
	case 17:
		if asciiEqualFold(name, "transfer-encoding") {
			g.teCount++
			// Only exactly "chunked" is accepted: RFC 9112 §6.1 requires chunked as the final
			// coding and net/http implements no other.
			g.teChunked = asciiEqualFold(trimOWS(l[colon+1:]), "chunked")
		}
	case 7:
		if asciiEqualFold(name, "upgrade") && len(trimOWS(l[colon+1:])) > 0 {
			g.upgrade = true
		}
	case 10:
		if asciiEqualFold(name, "connection") && hasToken(trimOWS(l[colon+1:]), "upgrade") {
			g.connUpg = true
		}
	}
	return ""
}

// endHeader decides on a complete, line-checked header block.
func (g *guardConn) endHeader(block []byte) {
	switch {
	case g.pri && g.h2c:
		// The HTTP/2 prior-knowledge preface: net/http takes over with its HTTP/2 server.
		g.release(block, stPassthrough)
		return
	case g.pri:
		// h2c is off: net/http serves the preface as a "PRI *" request (the hygiene answers
		// 505) and closes. What follows is HTTP/2 framing, never parsed as HTTP/1.
		g.release(block, stHeader)
		g.end = true
		return
	case g.clCount > 0 && g.teCount > 0:
		g.reject(codeAmbiguous)
		return
	case g.clCount > 1:
		g.reject(codeDuplicateCL) // even equal values: a list is one more parser difference
		return
	case g.clCount == 1 && g.cl < 0:
		g.reject(codeBadCL)
		return
	case g.teCount > 1 || g.teCount == 1 && (!g.teChunked || g.http10):
		g.reject(codeTE)
		return
	}
	after := stHeader
	if g.connect || g.upgrade && g.connUpg {
		after = stUpgrade
	}
	g.after = after
	switch {
	case g.teCount == 1:
		g.trailerLen = 0
		g.release(block, stChunkSize)
	case g.cl > 0:
		g.remain = g.cl
		g.release(block, stBody)
	default:
		g.release(block, after)
	}
}

// release passes a checked block (held in g.line, or still in the read buffer) and resets the
// per-block facts.
func (g *guardConn) release(block []byte, next parseState) {
	if g.onRelease != nil {
		g.onRelease(block)
	}
	g.out = append(g.out, block...)
	g.line, g.cur = g.line[:0], 0
	g.st = next
	g.first, g.clCount, g.teCount, g.cl = true, 0, 0, -1
	g.teChunked, g.upgrade, g.connUpg, g.connect, g.pri, g.http10 = false, false, false, false, false, false
}

func (g *guardConn) endBody() { g.st = g.after }

// chunkLine checks a complete chunk-size line, the CRLF after chunk data, or a trailer line.
func (g *guardConn) chunkLine() {
	line := g.line
	if !endsCRLF(line) || bytes.IndexByte(line[:len(line)-2], '\r') >= 0 {
		g.badBody()
		return
	}
	switch g.st {
	case stChunkCRLF:
		if len(line) != 2 {
			g.badBody()
			return
		}
		g.st = stChunkSize
	case stChunkSize:
		size, ok := parseChunkSize(line[:len(line)-2])
		if !ok {
			g.badBody()
			return
		}
		if size == 0 {
			g.st = stTrailer
		} else {
			g.remain, g.st = size, stChunkData
		}
	case stTrailer:
		g.trailerLen += len(line)
		if len(line) == 2 {
			g.out = append(g.out, line...)
			g.line = g.line[:0]
			g.endBody()
			return
		}
		if checkTrailer(line[:len(line)-2]) || g.trailerLen > g.maxHeader {
			g.badBody()
			return
		}
	}
	g.out = append(g.out, line...)
	g.line = g.line[:0]
}

// badBody ends the stream inside a malformed chunked body with bytes net/http's chunked reader
// rejects at exactly this point, so the handler sees a body error rather than a cancelled context.
func (g *guardConn) badBody() {
	switch g.st {
	case stChunkCRLF:
		g.out = append(g.out, "xx"...) // not the CRLF net/http requires after chunk data
	case stTrailer:
		// A trailer line without a colon, followed by an empty line so net/http's header
		// reader has no reason to read further.
		g.out = append(g.out, "x\r\n\r\n"...)
	default:
		g.out = append(g.out, "x\r\n"...) // not a hex chunk size
	}
	g.line = g.line[:0]
	g.reason = codeBadChunk
	g.end = true
}

// reject drops the held block and substitutes the synthetic request, then EOF.
func (g *guardConn) reject(code string) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	g.nonce = hex.EncodeToString(b[:])
	g.reason = code
	g.line, g.cur = g.line[:0], 0
	g.out = append(g.out, "GET "+rejectPathPrefix+g.nonce+" HTTP/1.1\r\nHost: limen\r\nConnection: close\r\n\r\n"...)
	g.end = true
}

// parseChunkSize reads chunk-size [BWS ";" chunk-ext] (RFC 9112 §7.1.1). Extensions are not
// interpreted (net/http drops them too). At most 15 hex digits, so the size fits an int64.
func parseChunkSize(b []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(b); i++ {
		c := b[i]
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			goto rest
		}
		if i == 15 {
			return 0, false
		}
		n = n<<4 | int64(v)
	}
rest:
	if i == 0 {
		return 0, false
	}
	for ; i < len(b) && (b[i] == ' ' || b[i] == '\t'); i++ {
	}
	if i < len(b) && b[i] != ';' {
		return 0, false
	}
	return n, true
}

// parseDigits parses a Content-Length value: 1*DIGIT only (no sign, no list), or -1.
func parseDigits(b []byte) int64 {
	if len(b) == 0 || len(b) > 18 {
		return -1
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// hasToken reports whether the comma-separated list v contains tok (case-insensitive).
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if asciiEqualFold(trimOWS(item), tok) {
			return true
		}
	}
	return false
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
