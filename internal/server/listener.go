package server

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/limen-gateway/limen/internal/httpx"
)

// runSpec is a ListenerSpec with what is derived from it once per Apply rather than per request.
type runSpec struct {
	ListenerSpec
	tlsConf   *tls.Config            // nil for cleartext
	sniConfs  map[string]*tls.Config // server name (or "*.suffix") -> config with its own client auth
	strip     []string               // canonical StripHeaders
	stripNorm map[string]bool        // StripHeaders lowercased with '-' for '_' spellings
}

func prepare(spec ListenerSpec) (*runSpec, error) {
	rs := &runSpec{ListenerSpec: spec, stripNorm: map[string]bool{}}
	if !spec.HTTP1 && !spec.H2 && !spec.H2C {
		rs.HTTP1 = true
	}
	if spec.TLS != nil {
		if len(spec.TLS.Certificates) == 0 {
			return nil, errors.New("tls needs at least one certificate")
		}
		cfg := &tls.Config{Certificates: spec.TLS.Certificates, MinVersion: spec.TLS.MinVersion}
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS12
		}
		if rs.H2 {
			cfg.NextProtos = append(cfg.NextProtos, "h2")
		}
		if rs.HTTP1 {
			cfg.NextProtos = append(cfg.NextProtos, "http/1.1")
		}
		cfg.ClientCAs, cfg.ClientAuth = spec.TLS.ClientCAs, spec.TLS.ClientAuth
		rs.tlsConf = cfg
		for _, sa := range spec.TLS.PerSNI {
			c := cfg.Clone()
			c.ClientCAs, c.ClientAuth = sa.ClientCAs, sa.ClientAuth
			if rs.sniConfs == nil {
				rs.sniConfs = map[string]*tls.Config{}
			}
			for _, n := range sa.Names {
				rs.sniConfs[strings.ToLower(n)] = c
			}
		}
	}
	for _, h := range spec.Hygiene.StripHeaders {
		rs.strip = append(rs.strip, http.CanonicalHeaderKey(h))
		rs.stripNorm[underscoreKey(h)] = true
	}
	return rs, nil
}

// tlsFor returns the TLS config for a server name: the one of a certificate with its own client
// authentication, or the listener's.
func (rs *runSpec) tlsFor(serverName string) *tls.Config {
	if len(rs.sniConfs) == 0 || serverName == "" {
		return rs.tlsConf
	}
	name := strings.TrimSuffix(strings.ToLower(serverName), ".")
	if c, ok := rs.sniConfs[name]; ok {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c, ok := rs.sniConfs["*"+name[i:]]; ok {
			return c
		}
	}
	return rs.tlsConf
}

func (rs *runSpec) serverKey() serverKey {
	return serverKey{
		http1: rs.HTTP1, h2: rs.H2 && rs.TLS != nil, h2c: rs.H2C && rs.TLS == nil, tls: rs.TLS != nil,
		readHeader: rs.ReadHeaderTimeout, idle: rs.IdleTimeout, maxHeader: rs.MaxHeaderBytes,
	}
}

func (rs *runSpec) handshakeTimeout() time.Duration {
	if rs.ReadHeaderTimeout > 0 {
		return rs.ReadHeaderTimeout
	}
	return defaultHandshakeTimeout
}

// socket is one bound address. Its accept loop terminates TLS, wraps HTTP/1 connections in the
// framing guard and hands them to the current generation's http.Server.
type socket struct {
	s       *Server
	ln      net.Listener
	spec    atomic.Pointer[runSpec]
	gen     atomic.Pointer[generation]
	tlsBase *tls.Config // asks spec for the current config on every ClientHello

	closed    chan struct{}
	closeOnce sync.Once
	pendMu    sync.Mutex
	pending   map[net.Conn]struct{} // connections in their TLS handshake or PROXY header
}

func newSocket(s *Server, ln net.Listener) *socket {
	sk := &socket{s: s, ln: ln, closed: make(chan struct{}), pending: map[net.Conn]struct{}{}}
	// Certificates swap in place on reload: each handshake reads the current spec.
	sk.tlsBase = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if rs := sk.spec.Load(); rs.tlsConf != nil {
			return rs.tlsFor(hello.ServerName), nil
		}
		return nil, errors.New("listener no longer terminates TLS")
	}}
	return sk
}

// update installs rs; a change of server-level settings starts a new generation and drains the
// previous one. Called with s.mu held.
func (sk *socket) update(rs *runSpec) {
	sk.spec.Store(rs)
	cur := sk.gen.Load()
	if cur != nil && cur.key == rs.serverKey() {
		return
	}
	sk.gen.Store(sk.s.newGeneration(sk, rs))
	if cur != nil {
		sk.s.drain(cur)
	}
}

// close stops accepting, aborts handshakes in progress and drains the current generation.
func (sk *socket) close() {
	sk.closeOnce.Do(func() {
		close(sk.closed)
		_ = sk.ln.Close()
		sk.pendMu.Lock()
		for c := range sk.pending {
			_ = c.Close()
		}
		sk.pendMu.Unlock()
		if g := sk.gen.Load(); g != nil {
			sk.s.drain(g)
		}
	})
}

func (sk *socket) acceptLoop() {
	defer sk.s.loops.Done()
	var delay time.Duration
	for {
		c, err := sk.ln.Accept()
		if err != nil {
			select {
			case <-sk.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does, never spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			sk.s.log.Warn("accept failed", "addr", sk.ln.Addr().String(), "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-sk.closed:
				return
			}
			continue
		}
		delay = 0
		rs := sk.spec.Load()
		if rs.tlsConf == nil && rs.Hygiene.ClientIP != httpx.SourceProxyProtocol {
			sk.deliver(newGuardConn(c, rs.MaxHeaderBytes, rs.H2C))
			continue
		}
		if !sk.track(c) {
			_ = c.Close()
			return
		}
		sk.s.loops.Add(1)
		go sk.prepare(c, rs)
	}
}

func (sk *socket) track(c net.Conn) bool {
	sk.pendMu.Lock()
	defer sk.pendMu.Unlock()
	select {
	case <-sk.closed:
		return false
	default:
	}
	sk.pending[c] = struct{}{}
	return true
}

func (sk *socket) untrack(c net.Conn) {
	sk.pendMu.Lock()
	delete(sk.pending, c)
	sk.pendMu.Unlock()
}

// prepare reads the PROXY header and terminates TLS off the accept loop, so a slow client cannot
// stall other connections; both are bounded by the handshake timeout. An h2 connection goes to
// net/http as the *tls.Conn; HTTP/1 goes through the guard.
func (sk *socket) prepare(raw net.Conn, rs *runSpec) {
	defer sk.s.loops.Done()
	_ = raw.SetDeadline(time.Now().Add(rs.handshakeTimeout()))
	c := raw
	if rs.Hygiene.ClientIP == httpx.SourceProxyProtocol {
		pc, err := readProxied(raw, rs.Hygiene.Trusted)
		if err != nil {
			sk.untrack(raw)
			_ = raw.Close()
			sk.s.log.Debug("proxy protocol header refused", "remote", raw.RemoteAddr().String(), "err", err)
			return
		}
		c = pc
	}
	if rs.tlsConf == nil {
		sk.untrack(raw)
		_ = raw.SetDeadline(time.Time{})
		sk.deliver(newGuardConn(c, rs.MaxHeaderBytes, rs.H2C))
		return
	}
	tc := tls.Server(c, sk.tlsBase)
	err := tc.Handshake()
	sk.untrack(raw)
	if err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		_ = raw.Close()
		sk.s.log.Debug("tls handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	_ = raw.SetDeadline(time.Time{})
	state := tc.ConnectionState()
	if state.NegotiatedProtocol == "h2" {
		sk.deliver(tc)
		return
	}
	sk.deliver(&tlsGuardConn{guardConn: newGuardConn(tc, rs.MaxHeaderBytes, false), state: state})
}

// readProxied reads the PROXY header a trusted load balancer sends first. Only trusted peers
// may speak it: anyone else could claim any client address.
func readProxied(c net.Conn, trusted *httpx.Trusted) (net.Conn, error) {
	peer := netip.Addr{}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		peer = a.AddrPort().Addr().Unmap()
	}
	if !trusted.Contains(peer) {
		return nil, errors.New("peer is not a trusted proxy")
	}
	br := bufio.NewReaderSize(c, 512)
	src, ok, err := readProxyHeader(br)
	if err != nil {
		return nil, err
	}
	remote := c.RemoteAddr()
	if ok {
		remote = net.TCPAddrFromAddrPort(src)
	}
	return &proxiedConn{Conn: c, br: br, remote: remote}, nil
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// deliver hands c to the current generation. A generation retired meanwhile passes it on to its
// successor; with none (the socket is closing) the connection is closed.
func (sk *socket) deliver(c net.Conn) {
	for {
		g := sk.gen.Load()
		select {
		case g.conns <- c:
			return
		case <-g.done:
			if sk.gen.Load() == g {
				_ = c.Close()
				return
			}
		}
	}
}

// underscoreKey folds a header name for the underscore comparison: lowercase, '_' as '-'.
func underscoreKey(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}
