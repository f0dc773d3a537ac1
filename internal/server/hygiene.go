package server

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/policy"
)

// forwardingHeaders are believed only from trusted proxies; from anyone else they are removed
// (canonical spellings, as net/http stores them).
var forwardingHeaders = map[string]bool{
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
	"X-Forwarded-Port": true, "X-Forwarded-Prefix": true, "X-Forwarded-Client-Cert": true,
	"X-Real-Ip": true, "X-Request-Id": true, "X-Client-Ip": true, "True-Client-Ip": true,
	"Cf-Connecting-Ip": true,
}

// forwardingNorm holds the same names folded by underscoreKey.
var forwardingNorm = func() map[string]bool {
	m := map[string]bool{}
	for k := range forwardingHeaders {
		m[underscoreKey(k)] = true
	}
	return m
}()

// reqState is the pooled per-request state: the Exchange and the response watcher.
type reqState struct {
	ex policy.Exchange
	w  watchWriter
}

var statePool = sync.Pool{New: func() any { return new(reqState) }}

// rejectDetails explain the framing guard's refusals.
var rejectDetails = map[string]string{
	codeAmbiguous:    "the request has both Content-Length and Transfer-Encoding",
	codeDuplicateCL:  "the request has more than one Content-Length",
	codeBadCL:        "the Content-Length is not a decimal number",
	codeTE:           "the only transfer coding accepted is chunked, alone, on HTTP/1.1",
	codeObsFold:      "obsolete line folding is not accepted",
	codeBareLF:       "lines must end with CRLF",
	codeBadField:     "a header field line is malformed",
	codeFieldNameWS:  "whitespace between a header field name and the colon",
	codeHeaderTooBig: "the request header block is too large",
}

// handler wraps a socket's requests: framing rejections, then hygiene and the dispatcher (or the
// listener's raw Handler), with panic recovery.
func (s *Server) handler(sk *socket) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs := sk.spec.Load()
		g, _ := r.Context().Value(connKey{}).(*guardConn)
		if g != nil && strings.HasPrefix(r.RequestURI, rejectPathPrefix) {
			if code := g.rejection(r.RequestURI); code != "" {
				s.log.Debug("request framing rejected", "listener", rs.Name, "remote", r.RemoteAddr, "code", code)
				w.Header().Set("Connection", "close")
				status := http.StatusBadRequest
				if code == codeHeaderTooBig {
					status = http.StatusRequestHeaderFieldsTooLarge
				}
				httpx.WriteProblem(w, r, status, code, rejectDetails[code])
				return
			}
		}
		st := statePool.Get().(*reqState)
		st.w.reset(w)
		if rs.Handler != nil {
			s.serveRaw(rs.Handler, &st.w, r)
		} else {
			s.serveHygienic(rs, st, r, g)
		}
		if st.w.hijacked || g != nil && g.wasHijacked() {
			// An upgraded connection's goroutines may still hold the Exchange: leave it to GC.
			return
		}
		st.ex.Reset()
		st.w.reset(nil)
		statePool.Put(st)
	})
}

func (s *Server) serveRaw(h http.Handler, w *watchWriter, r *http.Request) {
	defer s.recoverPanic(w, r, "")
	h.ServeHTTP(w, r)
}

func (s *Server) serveHygienic(rs *runSpec, st *reqState, r *http.Request, g *guardConn) {
	w := &st.w
	h := &rs.Hygiene
	switch {
	case r.Method == "PRI" && r.ProtoMajor == 2:
		// HTTP/2 prior knowledge on a listener without h2c: net/http serves the preface as a
		// request and closes the connection after the answer.
		httpx.WriteProblem(w, r, http.StatusHTTPVersionNotSupported, "h2c_disabled", "this listener does not accept cleartext HTTP/2")
		return
	case r.Method == http.MethodConnect && !h.AllowConnect:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		httpx.WriteProblem(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "CONNECT is not allowed")
		return
	}
	if r.Method != http.MethodConnect {
		raw, ok := requestPath(r.RequestURI)
		if !ok {
			httpx.WriteProblem(w, r, http.StatusBadRequest, "bad_path", "the request target is not a path")
			return
		}
		norm, err := httpx.NormalizePath(raw, h.Paths)
		if err != nil {
			httpx.WriteProblem(w, r, http.StatusBadRequest, httpx.PathErrorCode(err), err.Error())
			return
		}
		r.URL.RawPath = norm
		r.URL.Path = httpx.UnescapePath(norm)
	}
	host := ""
	if r.Host != "" {
		var err error
		if host, err = httpx.NormalizeHost(r.Host); err != nil {
			httpx.WriteProblem(w, r, http.StatusBadRequest, "bad_host", "the Host header is invalid")
			return
		}
	}
	r.URL.Host = host
	if r.TLS != nil && len(rs.sniConfs) > 0 && rs.tlsFor(r.TLS.ServerName) != rs.tlsFor(host) {
		// The connection's client authentication was set up for the name in its SNI. A request
		// for a name with other settings on it (domain fronting, HTTP/2 connection reuse) would
		// skip the certificate that name requires (RFC 9110 §15.5.20).
		httpx.WriteProblem(w, r, http.StatusMisdirectedRequest, "misdirected_request",
			"this connection was not set up for the requested host; open a new connection for it")
		return
	}

	var peer netip.Addr
	if g != nil {
		peer = g.peer // parsed once per connection
	} else {
		peer = peerAddr(r.RemoteAddr)
	}
	trusted := h.Trusted.Contains(peer)
	stripHeaders(r.Header, rs, trusted)
	stripH2CUpgrade(r.Header)

	ex := &st.ex
	ex.Listener = rs.Name
	ex.Start = time.Now()
	ex.ClientIP = httpx.ClientIP(peer, r.Header, h.ClientIP, h.Trusted)
	if ids := r.Header["X-Request-Id"]; trusted && len(ids) == 1 && httpx.ValidRequestID(ids[0]) {
		ex.RequestID = ids[0]
	} else {
		ex.RequestID = httpx.RequestID()
	}
	s.dispatchSafely(w, r.WithContext(policy.WithExchange(r.Context(), ex)), ex.RequestID)
}

func (s *Server) dispatchSafely(w *watchWriter, r *http.Request, requestID string) {
	defer s.recoverPanic(w, r, requestID)
	s.dispatch.ServeHTTP(w, r)
}

// recoverPanic turns a handler panic into a logged 500, or cuts the stream when the response
// already started (a truncated response must not look complete). http.ErrAbortHandler is
// re-panicked: it is how a handler deliberately aborts a response, and net/http handles it.
func (s *Server) recoverPanic(w *watchWriter, r *http.Request, requestID string) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.log.Error("panic while serving a request", "request_id", requestID, "method", r.Method,
		"path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
	if w.wrote || w.hijacked {
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Connection", "close")
	httpx.WriteProblem(w, r, http.StatusInternalServerError, "internal_error", "the gateway failed to handle the request")
}

// requestPath returns the raw path of an origin-form or absolute-form request target, without
// the query. Asterisk-form and authority-form (outside CONNECT) are not paths.
func requestPath(uri string) (string, bool) {
	if len(uri) > 0 && uri[0] == '/' {
		if i := strings.IndexByte(uri, '?'); i >= 0 {
			uri = uri[:i]
		}
		return uri, true
	}
	// absolute-form: scheme "://" authority [path] ["?" query] (RFC 9112 §3.2.2).
	i := strings.Index(uri, "://")
	if i <= 0 {
		return "", false
	}
	rest := uri[i+3:]
	end := strings.IndexAny(rest, "/?")
	if end < 0 || rest[end] == '?' {
		return "/", true
	}
	p := rest[end:]
	if q := strings.IndexByte(p, '?'); q >= 0 {
		p = p[:q]
	}
	return p, true
}

// stripHeaders removes forwarding headers unless the peer is trusted, and the listener's
// identity headers always, including their underscore spellings.
func stripHeaders(hdr http.Header, rs *runSpec, trusted bool) {
	for k := range hdr {
		// Every forwarding header starts with one of these: most names skip the lookup.
		if len(k) > 0 && !trusted && (k[0] == 'X' || k[0] == 'F' || k[0] == 'T' || k[0] == 'C') && forwardingHeaders[k] {
			delete(hdr, k)
			continue
		}
		if strings.IndexByte(k, '_') >= 0 {
			n := underscoreKey(k)
			if rs.stripNorm[n] || !trusted && forwardingNorm[n] {
				delete(hdr, k)
			}
		}
	}
	for _, k := range rs.strip {
		delete(hdr, k)
	}
}

func peerAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// stripH2CUpgrade removes the h2c token from Upgrade and drops HTTP2-Settings: an h2c upgrade
// is never honored (it would tunnel later requests past routing and policies).
func stripH2CUpgrade(h http.Header) {
	delete(h, "Http2-Settings")
	vals := h["Upgrade"]
	if len(vals) == 0 {
		return
	}
	changed := false
	for _, v := range vals {
		if strings.Contains(strings.ToLower(v), "h2c") {
			changed = true
		}
	}
	if !changed {
		return
	}
	var keep []string
	for _, v := range vals {
		for _, tok := range strings.Split(v, ",") {
			t := strings.TrimSpace(tok)
			if t != "" && !strings.EqualFold(t, "h2c") {
				keep = append(keep, t)
			}
		}
	}
	if len(keep) == 0 {
		delete(h, "Upgrade")
		return
	}
	h["Upgrade"] = []string{strings.Join(keep, ", ")}
}

// watchWriter notes whether the response started or the connection was taken over, for panic
// recovery and for the Exchange pool. It unwraps, so http.ResponseController reaches the
// connection (deadlines, full duplex).
type watchWriter struct {
	http.ResponseWriter
	wrote, hijacked bool
}

func (w *watchWriter) reset(rw http.ResponseWriter) {
	w.ResponseWriter, w.wrote, w.hijacked = rw, false, false
}

func (w *watchWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

func (w *watchWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush sends buffered data; it commits the response headers.
func (w *watchWriter) Flush() {
	w.wrote = true
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection over (WebSocket and other upgrades).
func (w *watchWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return http.NewResponseController(w.ResponseWriter).Hijack()
}
