package server

import (
	"bufio"
	"crypto/tls"
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

// forwardingHeaders are believed only from trusted proxies; from anyone else they are removed.
var forwardingHeaders = []string{
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
	"X-Forwarded-Prefix", "X-Forwarded-Client-Cert", "X-Real-Ip", "X-Request-Id", "X-Client-Ip",
	"True-Client-Ip", "Cf-Connecting-Ip",
}

var exchangePool = sync.Pool{New: func() any { return new(policy.Exchange) }}

// handler wraps the dispatcher with recovery and request hygiene, once per request.
func (s *Server) handler(l *listener) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		spec := l.spec.Load()
		conn, _ := r.Context().Value(connKey{}).(net.Conn)
		g, _ := conn.(*guardConn)
		if g != nil {
			if p := g.rejectPath(); p != "" && r.URL.Path == p {
				w.Header().Set("Connection", "close")
				httpx.WriteProblem(w, r, http.StatusBadRequest, g.rejection(), "the request's framing is ambiguous or malformed")
				return
			}
			if g.tls != nil && r.TLS == nil {
				r.TLS = g.tls.(*tls.ConnectionState)
			}
		}
		if spec.Handler != nil {
			defer s.recover(nil, r, "")
			spec.Handler.ServeHTTP(w, r)
			return
		}
		s.serveHygienic(spec, w, r)
	})
}

// recover turns a handler panic into a logged 500, or into an aborted stream when the response
// already started. http.ErrAbortHandler is re-panicked: it is how a handler cuts a stream.
func (s *Server) recover(w *hijackWatch, r *http.Request, requestID string) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.log.Error("panic while serving a request", "request_id", requestID, "path", r.URL.Path,
		"panic", v, "stack", string(debug.Stack()))
	if w == nil || w.wrote || w.hijacked {
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Connection", "close")
	httpx.WriteProblem(w, r, http.StatusInternalServerError, "internal_error", "the gateway failed to handle the request")
}

func (s *Server) serveHygienic(spec *ListenerSpec, w http.ResponseWriter, r *http.Request) {
	h := spec.Hygiene
	if r.Method == http.MethodConnect && !h.AllowConnect {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		httpx.WriteProblem(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "CONNECT is not allowed")
		return
	}
	if r.Method != http.MethodConnect {
		raw := r.RequestURI
		if !strings.HasPrefix(raw, "/") {
			// Absolute form ("http://host/path") or "*": use the parsed URL's path.
			raw = r.URL.EscapedPath()
			if raw == "" {
				raw = "/"
			}
		}
		if i := strings.IndexByte(raw, '?'); i >= 0 {
			raw = raw[:i]
		}
		norm, err := httpx.NormalizePath(raw, h.Paths)
		if err != nil {
			httpx.WriteProblem(w, r, http.StatusBadRequest, httpx.PathErrorCode(err), err.Error())
			return
		}
		r.URL.RawPath = norm
		r.URL.Path = httpx.UnescapePath(norm)
	}
	host, err := httpx.NormalizeHost(r.Host)
	if err != nil {
		httpx.WriteProblem(w, r, http.StatusBadRequest, "bad_host", "the Host header is invalid")
		return
	}
	r.URL.Host = host

	peer := peerAddr(r.RemoteAddr)
	trusted := h.Trusted.Contains(peer)
	if !trusted {
		for _, k := range forwardingHeaders {
			delete(r.Header, k)
		}
	}
	for _, k := range h.StripHeaders {
		r.Header.Del(k)
	}
	stripH2CUpgrade(r.Header)

	ex := exchangePool.Get().(*policy.Exchange)
	ex.Listener = spec.Name
	ex.Start = time.Now()
	ex.ClientIP = httpx.ClientIP(peer, r.Header, h.ClientIP, h.Trusted)
	if id := r.Header.Get("X-Request-Id"); trusted && httpx.ValidRequestID(id) {
		ex.RequestID = id
	} else {
		ex.RequestID = httpx.RequestID()
	}
	rw := &hijackWatch{ResponseWriter: w}
	s.dispatchSafely(rw, r.WithContext(policy.WithExchange(r.Context(), ex)), ex.RequestID)
	if !rw.hijacked {
		// After a hijack the tunnel's goroutines may still read the exchange: let GC have it.
		ex.Reset()
		exchangePool.Put(ex)
	}
}

func (s *Server) dispatchSafely(w *hijackWatch, r *http.Request, requestID string) {
	defer s.recover(w, r, requestID)
	s.dispatch.ServeHTTP(w, r)
}

// hijackWatch notes whether the response started or the connection was taken over.
type hijackWatch struct {
	http.ResponseWriter
	wrote, hijacked bool
}

func (h *hijackWatch) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		h.wrote = true
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h *hijackWatch) Write(p []byte) (int, error) {
	h.wrote = true
	return h.ResponseWriter.Write(p)
}

func (h *hijackWatch) Unwrap() http.ResponseWriter { return h.ResponseWriter }

func (h *hijackWatch) Flush() { _ = http.NewResponseController(h.ResponseWriter).Flush() }

func (h *hijackWatch) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h.hijacked = true
	return http.NewResponseController(h.ResponseWriter).Hijack()
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
	vals := h["Upgrade"]
	if len(vals) == 0 {
		return
	}
	var keep []string
	changed := false
	for _, v := range vals {
		for _, tok := range strings.Split(v, ",") {
			t := strings.TrimSpace(tok)
			if strings.EqualFold(t, "h2c") {
				changed = true
				continue
			}
			if t != "" {
				keep = append(keep, t)
			}
		}
	}
	if !changed {
		return
	}
	delete(h, "Http2-Settings")
	if len(keep) == 0 {
		delete(h, "Upgrade")
		return
	}
	h["Upgrade"] = []string{strings.Join(keep, ", ")}
}
