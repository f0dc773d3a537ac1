// Package server owns Limen's sockets: listeners (HTTP/1.1, HTTP/2 over TLS via ALPN, opt-in h2c
// prior knowledge), TLS termination with certificates chosen by SNI, the HTTP/1 framing guard,
// and request hygiene. Each request reaches the dispatcher normalized and stripped, with a
// policy.Exchange in its context.
//
// # What the dispatcher can rely on
//
//   - r.URL.RawPath is the normalized escaped path (httpx.NormalizePath) and r.URL.Path its
//     unescaped form. Asterisk-form targets ("OPTIONS *") are answered 400 bad_path: no route can
//     match them and the gateway has no server-wide options to report.
//   - r.URL.Host is the normalized host (httpx.NormalizeHost: lowercase, no port, no trailing
//     dot); it is empty in server requests otherwise, and the proxy sets the outbound URL itself.
//     r.Host keeps the client's value (preserve_host forwards it as sent). A request without a
//     Host (HTTP/1.0) has an empty r.URL.Host.
//   - Forwarding headers (Forwarded, X-Forwarded-*, X-Real-IP, X-Request-ID, X-Client-IP,
//     True-Client-IP, CF-Connecting-IP) are removed unless the TCP peer is trusted; the identity
//     headers in Hygiene.StripHeaders are removed from every request, trusted or not, because
//     only the gateway sets them. Underscore spellings (X_Forwarded_For) are removed with them:
//     CGI-style upstreams read both as HTTP_X_FORWARDED_FOR.
//   - An h2c upgrade is never honored: the token is removed from Upgrade, HTTP2-Settings dropped.
//   - CONNECT is refused with 405 unless Hygiene.AllowConnect (then its authority-form target
//     is not path-normalized).
//
// # Listeners and reloads
//
// Apply reconciles the running set. A listener whose address is unchanged keeps its socket.
// Hygiene, TLS certificates and a raw Handler are swapped in place (read per request or
// handshake), so open connections keep working. A change of protocols, timeouts or
// MaxHeaderBytes (or TLS on/off) starts a new http.Server generation on the same socket: new
// connections go to it; the previous generation stops accepting, finishes its in-flight
// requests with the old settings and closes its idle keep-alive connections. New addresses are
// bound before anything closes, and a bind failure rejects the whole Apply. Removed listeners
// stop accepting and drain; upgraded connections on them stay open until Shutdown.
//
// # TLS and the framing guard
//
// TLS is terminated by the server's own accept loop, not by net/http, so HTTP/1 over TLS passes
// the framing guard too: a connection that negotiated h2 is handed to net/http as the *tls.Conn
// (HTTP/2 framing is length-prefixed, and net/http only runs HTTP/2 on a *tls.Conn); any other
// is wrapped in the guard, which exposes ConnectionState so net/http still fills Request.TLS.
//
// # PROXY protocol
//
// With Hygiene.ClientIP set to httpx.SourceProxyProtocol every connection must start with a
// PROXY header (v1 or v2) and come from a Hygiene.Trusted peer; anything else is closed. The
// header's source becomes the connection's RemoteAddr, so r.RemoteAddr, the client IP and the
// trust decision for forwarding headers all use the real client. (A private reader stands in
// for internal/proxyproto until that package exists.)
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/limen-gateway/limen/internal/httpx"
)

// Hygiene configures request hygiene for a listener.
type Hygiene struct {
	// ClientIP is where the client address comes from.
	ClientIP httpx.IPSource
	// Trusted are the proxies whose forwarding headers are believed; nil trusts nobody.
	Trusted *httpx.Trusted
	// Paths tunes path normalization.
	Paths httpx.PathOptions
	// StripHeaders are identity headers only the gateway may set: removed from every request.
	StripHeaders []string
	// AllowConnect lets CONNECT through to the router (some route lists it).
	AllowConnect bool
}

// TLSSpec is the TLS termination of a listener. The certificate is chosen by SNI among
// Certificates (the first one when none matches).
type TLSSpec struct {
	Certificates []tls.Certificate
	MinVersion   uint16
	// ClientCAs and ClientAuth ask clients for certificates (mutual TLS) on every name.
	ClientCAs  *x509.CertPool
	ClientAuth tls.ClientAuthType
	// PerSNI overrides client authentication for some server names.
	PerSNI []SNIClientAuth
}

// SNIClientAuth is client authentication for the names one certificate serves. Names are
// lowercase DNS names, "*.example.com" wildcards included.
type SNIClientAuth struct {
	Names      []string
	ClientCAs  *x509.CertPool
	ClientAuth tls.ClientAuthType
}

// ListenerSpec describes one listener.
type ListenerSpec struct {
	Name, Addr string
	// HTTP1, H2 (over TLS, via ALPN) and H2C (cleartext HTTP/2 with prior knowledge) select the
	// protocols; none set means HTTP/1 only.
	HTTP1, H2, H2C bool
	TLS            *TLSSpec
	// ReadHeaderTimeout also bounds the TLS handshake (10s when zero). IdleTimeout bounds
	// keep-alive waits. There is deliberately no whole-request timeout (streams).
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	Hygiene           Hygiene
	// Handler, when set, is served without hygiene or an Exchange (admin and ops listeners);
	// the framing guard and panic recovery still apply.
	Handler http.Handler
}

// defaultHandshakeTimeout bounds a TLS handshake when the listener sets no ReadHeaderTimeout.
const defaultHandshakeTimeout = 10 * time.Second

// Server runs the listener set.
type Server struct {
	dispatch http.Handler
	log      *slog.Logger

	mu      sync.Mutex
	sockets map[string]*socket // by reconcile key (the address)
	byName  map[string]*socket
	closed  bool

	// drainCtx bounds the drains of retired generations; Shutdown cancels it when its own
	// context ends, which turns every remaining drain into a hard close.
	drainCtx    context.Context
	cancelDrain context.CancelFunc
	drains      sync.WaitGroup // generation drains
	loops       sync.WaitGroup // accept loops and handshakes

	hijackMu sync.Mutex
	hijacked map[*guardConn]struct{} // connections Shutdown must close itself
}

// New returns a server that hands requests to dispatch after hygiene, with a policy.Exchange in
// the request context.
func New(dispatch http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		dispatch: dispatch, log: log,
		sockets: map[string]*socket{}, byName: map[string]*socket{},
		drainCtx: ctx, cancelDrain: cancel,
		hijacked: map[*guardConn]struct{}{},
	}
}

// Addr returns a listener's bound address, or nil when no listener has that name.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sk := s.byName[name]; sk != nil {
		return sk.ln.Addr()
	}
	return nil
}

// reconcileKey is the identity of a socket across Apply calls: its address. Ephemeral ":0"
// addresses are keyed by name too, or every reload would move them to a new port.
func reconcileKey(spec *ListenerSpec) string {
	if _, port, err := net.SplitHostPort(spec.Addr); err == nil && port == "0" {
		return spec.Name + "\x00" + spec.Addr
	}
	return spec.Addr
}

// Apply reconciles the running listeners with specs; see the package documentation. On error
// nothing changed.
func (s *Server) Apply(specs []ListenerSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("server is shut down")
	}
	prepared := make([]*runSpec, len(specs))
	names := map[string]bool{}
	keys := map[string]bool{}
	for i := range specs {
		spec := specs[i]
		if spec.Name == "" {
			return fmt.Errorf("listener %d: a name is required", i)
		}
		if names[spec.Name] {
			return fmt.Errorf("listener %s: duplicate name", spec.Name)
		}
		names[spec.Name] = true
		key := reconcileKey(&spec)
		if keys[key] {
			return fmt.Errorf("listener %s: address %s is used twice", spec.Name, spec.Addr)
		}
		keys[key] = true
		rs, err := prepare(spec)
		if err != nil {
			return fmt.Errorf("listener %s: %w", spec.Name, err)
		}
		prepared[i] = rs
	}

	// Bind every new address before touching anything running.
	fresh := map[string]*socket{}
	for _, rs := range prepared {
		key := reconcileKey(&rs.ListenerSpec)
		if s.sockets[key] != nil {
			continue
		}
		ln, err := net.Listen("tcp", rs.Addr)
		if err != nil {
			for _, sk := range fresh {
				_ = sk.ln.Close()
			}
			return fmt.Errorf("listener %s: %w", rs.Name, err)
		}
		fresh[key] = newSocket(s, ln)
	}

	next := map[string]*socket{}
	byName := map[string]*socket{}
	for _, rs := range prepared {
		key := reconcileKey(&rs.ListenerSpec)
		sk := s.sockets[key]
		if sk == nil {
			sk = fresh[key]
		}
		sk.update(rs)
		next[key] = sk
		byName[rs.Name] = sk
	}
	for key, sk := range fresh {
		_ = key
		s.loops.Add(1)
		go sk.acceptLoop()
	}
	for key, sk := range s.sockets {
		if next[key] == nil {
			sk.close()
		}
	}
	s.sockets, s.byName = next, byName
	return nil
}

// generation is one http.Server serving a socket's connections with one set of server-level
// settings.
type generation struct {
	srv   *http.Server
	key   serverKey
	conns chan net.Conn
	done  chan struct{} // closed when the generation stops accepting
	once  sync.Once
	addr  net.Addr
}

// serverKey holds the settings baked into an http.Server; a change needs a new generation.
type serverKey struct {
	http1, h2, h2c, tls bool
	readHeader, idle    time.Duration
	maxHeader           int
}

func (g *generation) retire() { g.once.Do(func() { close(g.done) }) }

// Accept, Close and Addr make the generation the net.Listener its http.Server serves.
func (g *generation) Accept() (net.Conn, error) {
	select {
	case c := <-g.conns:
		return c, nil
	case <-g.done:
		return nil, net.ErrClosed
	}
}

func (g *generation) Close() error   { g.retire(); return nil }
func (g *generation) Addr() net.Addr { return g.addr }

// newGeneration builds and starts an http.Server for sk with rs's settings.
func (s *Server) newGeneration(sk *socket, rs *runSpec) *generation {
	key := rs.serverKey()
	g := &generation{key: key, conns: make(chan net.Conn), done: make(chan struct{}), addr: sk.ln.Addr()}
	protos := new(http.Protocols)
	protos.SetHTTP1(key.http1)
	protos.SetHTTP2(key.h2)
	protos.SetUnencryptedHTTP2(key.h2c)
	g.srv = &http.Server{
		Handler:           s.handler(sk),
		ReadHeaderTimeout: key.readHeader,
		IdleTimeout:       key.idle,
		MaxHeaderBytes:    key.maxHeader,
		Protocols:         protos,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if gc := guardOf(c); gc != nil {
				return context.WithValue(ctx, connKey{}, gc)
			}
			return ctx
		},
		ConnState: s.connState,
	}
	s.drains.Add(1)
	go func() {
		defer s.drains.Done()
		if err := g.srv.Serve(g); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("listener stopped", "addr", g.addr.String(), "err", err)
		}
	}()
	return g
}

// drain stops g gracefully in the background: in-flight requests finish, idle connections
// close; when the server shuts down and its context ends, whatever is left is closed.
func (s *Server) drain(g *generation) {
	g.retire()
	s.drains.Add(1)
	go func() {
		defer s.drains.Done()
		if err := g.srv.Shutdown(s.drainCtx); err != nil {
			_ = g.srv.Close()
		}
	}()
}

type connKey struct{}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	g := guardOf(c)
	if g == nil {
		return // HTTP/2 connections: no hijacking, no HTTP/1 framing to follow
	}
	switch st {
	case http.StateIdle:
		g.connState(connIdle)
	case http.StateHijacked:
		g.connState(connHijacked)
		s.hijackMu.Lock()
		s.hijacked[g] = struct{}{}
		s.hijackMu.Unlock()
		g.setOnClose(func() {
			s.hijackMu.Lock()
			delete(s.hijacked, g)
			s.hijackMu.Unlock()
		})
	}
}

// Shutdown stops accepting on every listener, waits for in-flight requests until they finish or
// ctx ends, then closes every remaining connection, hijacked ones (WebSockets, tunnels) included:
// http.Server.Shutdown neither waits for nor closes those. It returns ctx's error when requests
// were still running at its end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	sockets := s.sockets
	s.sockets, s.byName = map[string]*socket{}, map[string]*socket{}
	s.mu.Unlock()
	for _, sk := range sockets {
		sk.close()
	}
	drained := make(chan struct{})
	go func() {
		s.drains.Wait()
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = fmt.Errorf("in-flight requests cut at the end of the drain: %w", ctx.Err())
		s.cancelDrain() // every drain turns into a hard close
		<-drained
	}
	s.cancelDrain()
	s.hijackMu.Lock()
	conns := make([]*guardConn, 0, len(s.hijacked))
	for g := range s.hijacked {
		conns = append(conns, g)
	}
	s.hijackMu.Unlock()
	for _, g := range conns {
		_ = g.Close()
	}
	s.loops.Wait()
	return err
}
