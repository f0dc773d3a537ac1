// Package server owns Limen's sockets: listeners (HTTP/1.1, HTTP/2 over TLS, opt-in h2c), TLS
// termination with certificates chosen by SNI, the framing guard, and request hygiene. It hands
// each request, normalized and stripped, to the dispatcher with a policy.Exchange in its context.
//
// Hygiene stores the normalized host in r.URL.Host (empty for server requests otherwise), so the
// router reads it without recomputing; the proxy sets the outbound URL itself.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/limen-gateway/limen/internal/httpx"
)

// Hygiene configures request hygiene for a listener.
type Hygiene struct {
	ClientIP     httpx.IPSource
	Trusted      *httpx.Trusted
	Paths        httpx.PathOptions
	StripHeaders []string
	AllowConnect bool
}

// TLSSpec is the TLS termination of a listener.
type TLSSpec struct {
	Certificates []tls.Certificate
	MinVersion   uint16
}

// ListenerSpec describes one listener.
type ListenerSpec struct {
	Name, Addr        string
	HTTP1, H2, H2C    bool
	TLS               *TLSSpec
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	Hygiene           Hygiene
	// Handler, when set, is served without hygiene or an Exchange (admin and ops listeners).
	Handler http.Handler
}

// Server runs the listener set.
type Server struct {
	dispatch http.Handler
	log      *slog.Logger

	mu        sync.Mutex
	listeners map[string]*listener
	hijacked  sync.Map // net.Conn -> struct{}: connections Shutdown must close itself
}

type listener struct {
	name string
	addr string
	spec atomic.Pointer[ListenerSpec]
	tls  atomic.Pointer[tls.Config]
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// New returns a server that hands requests to dispatch.
func New(dispatch http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{dispatch: dispatch, log: log, listeners: map[string]*listener{}}
}

// Addr returns a listener's bound address, or nil.
func (s *Server) Addr(name string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.listeners[name]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

// Apply reconciles the running listeners with specs. A listener whose address is unchanged keeps
// its socket and open connections; its TLS certificates, hygiene and handler are swapped in place
// (timeouts, protocols and header limits of a kept socket apply after a restart). New addresses
// are bound before anything old closes; a bind failure leaves everything as it was.
func (s *Server) Apply(specs []ListenerSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A listener is kept when its address is unchanged. ":0" addresses (tests) are kept by name
	// too, or every reload would move them to a new port.
	key := func(name, addr string) string {
		if isEphemeral(addr) {
			return name + "|" + addr
		}
		return addr
	}
	byAddr := map[string]*listener{}
	for _, l := range s.listeners {
		byAddr[key(l.name, l.addr)] = l
	}
	next := map[string]*listener{}
	var fresh []*listener
	for i := range specs {
		spec := specs[i]
		if old := byAddr[key(spec.Name, spec.Addr)]; old != nil && (old.tls.Load() == nil) == (spec.TLS == nil) {
			old.update(&spec)
			old.name = spec.Name
			next[spec.Name] = old
			delete(byAddr, key(spec.Name, spec.Addr))
			continue
		}
		l, err := s.bind(&spec)
		if err != nil {
			for _, f := range fresh {
				_ = f.ln.Close()
			}
			return fmt.Errorf("listener %s: %w", spec.Name, err)
		}
		fresh = append(fresh, l)
		next[spec.Name] = l
	}
	for _, l := range fresh {
		go s.serve(l)
	}
	for _, l := range byAddr {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = l.srv.Shutdown(ctx)
		}()
	}
	s.listeners = next
	return nil
}

// isEphemeral reports ":0"-style addresses, which always mean a new socket.
func isEphemeral(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

func (l *listener) update(spec *ListenerSpec) {
	l.spec.Store(spec)
	if spec.TLS != nil {
		l.tls.Store(tlsConfig(spec))
	}
}

func tlsConfig(spec *ListenerSpec) *tls.Config {
	cfg := &tls.Config{
		Certificates: spec.TLS.Certificates,
		MinVersion:   spec.TLS.MinVersion,
		NextProtos:   []string{"http/1.1"},
	}
	if spec.H2 {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	return cfg
}

func (s *Server) bind(spec *ListenerSpec) (*listener, error) {
	raw, err := net.Listen("tcp", spec.Addr)
	if err != nil {
		return nil, err
	}
	l := &listener{name: spec.Name, addr: spec.Addr, done: make(chan struct{})}
	l.update(spec)
	maxHeader := func() int { return l.spec.Load().MaxHeaderBytes }
	if spec.TLS != nil {
		l.ln = newTLSListener(raw, func() *tls.Config { return l.tls.Load() }, maxHeader)
	} else {
		l.ln = &guardListener{Listener: raw, maxHeader: maxHeader}
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(spec.HTTP1 || !spec.H2 && !spec.H2C)
	protos.SetHTTP2(spec.TLS != nil && spec.H2)
	protos.SetUnencryptedHTTP2(spec.H2C && spec.TLS == nil)
	l.srv = &http.Server{
		Handler:           s.handler(l),
		ReadHeaderTimeout: spec.ReadHeaderTimeout,
		IdleTimeout:       spec.IdleTimeout,
		MaxHeaderBytes:    spec.MaxHeaderBytes,
		Protocols:         protos,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateHijacked {
				s.hijacked.Store(c, struct{}{})
				if g, ok := c.(*guardConn); ok {
					g.onClose(func() { s.hijacked.Delete(c) })
				}
			}
		},
	}
	if spec.TLS != nil && spec.H2 {
		// net/http serves h2 on *tls.Conn values the listener hands over after ALPN chose h2.
		l.srv.TLSConfig = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	}
	return l, nil
}

type connKey struct{}

func (s *Server) serve(l *listener) {
	defer close(l.done)
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Error("listener stopped", "listener", l.name, "err", err)
	}
}

// Shutdown stops accepting, waits for in-flight requests until ctx ends, then closes every
// remaining connection, hijacked ones (WebSockets) included.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ls := make([]*listener, 0, len(s.listeners))
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	s.listeners = map[string]*listener{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(ls))
	for i, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.srv.Shutdown(ctx)
			if errs[i] != nil {
				_ = l.srv.Close()
			}
			<-l.done
		}()
	}
	wg.Wait()
	s.hijacked.Range(func(k, _ any) bool {
		_ = k.(net.Conn).Close()
		s.hijacked.Delete(k)
		return true
	})
	return errors.Join(errs...)
}
