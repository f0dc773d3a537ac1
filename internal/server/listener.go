package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// guardListener wraps cleartext connections in the framing guard. h2c prior knowledge passes
// through it (the guard recognizes the preface).
type guardListener struct {
	net.Listener
	maxHeader func() int
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newGuardConn(c, l.maxHeader()), nil
}

// tlsListener terminates TLS itself so HTTP/1 over TLS can go through the framing guard too:
// net/http only parses HTTP/2 on a *tls.Conn, so a connection that negotiated h2 is handed over
// as is, and an HTTP/1 one as a guarded plaintext stream carrying its TLS state (the hygiene
// handler restores r.TLS from it). Handshakes run off the accept loop so a slow client cannot
// stall other connections.
type tlsListener struct {
	inner     net.Listener
	config    func() *tls.Config
	maxHeader func() int
	timeout   time.Duration

	conns  chan net.Conn
	done   chan struct{}
	once   sync.Once
	errMu  sync.Mutex
	err    error
	active sync.WaitGroup
}

func newTLSListener(inner net.Listener, config func() *tls.Config, maxHeader func() int) *tlsListener {
	l := &tlsListener{inner: inner, config: config, maxHeader: maxHeader, timeout: 10 * time.Second,
		conns: make(chan net.Conn), done: make(chan struct{})}
	go l.loop()
	return l
}

func (l *tlsListener) loop() {
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			l.errMu.Lock()
			l.err = err
			l.errMu.Unlock()
			l.Close()
			return
		}
		l.active.Add(1)
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(c net.Conn) {
	defer l.active.Done()
	tc := tls.Server(c, l.config())
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		_ = c.Close()
		return
	}
	var out net.Conn = tc
	if state := tc.ConnectionState(); state.NegotiatedProtocol != "h2" {
		g := newGuardConn(tc, l.maxHeader())
		g.tls = &state
		out = g
	}
	select {
	case l.conns <- out:
	case <-l.done:
		_ = out.Close()
	}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		l.errMu.Lock()
		defer l.errMu.Unlock()
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

func (l *tlsListener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }
