// Package outbound builds the hardened HTTP clients policies use to call services of their own
// (auth services, shadow services, token introspection, key sets, OpenID providers), so each
// policy states its limits and none re-implements the hardening.
//
// Every client trusts the system roots plus an optional extra CA, speaks TLS 1.2 at least,
// ignores the proxy environment variables (HTTP_PROXY and friends must not reroute the
// gateway's credentials through a host nobody configured), asks for no compression, and never
// follows a redirect: a redirect could send a token or a client secret to another host, or hand
// the gateway another party's keys, so the redirect itself is the answer. Key and provider
// fetches can further refuse anything but https and cap the bodies they read.
//
// It imports only the standard library.
package outbound

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// Options are one client's settings. A zero field keeps net/http's default for it (no timeout,
// no limit), except where noted.
type Options struct {
	// CA holds PEM certificates trusted in addition to the system roots; nil trusts the system
	// roots alone. A non-nil CA without a certificate is an error.
	CA []byte
	// DialTimeout bounds connecting; when set, the dialer also keeps connections alive every
	// 30s. Zero keeps the transport's default dialer.
	DialTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake.
	TLSHandshakeTimeout time.Duration
	// Timeout bounds a whole exchange, body included (http.Client.Timeout).
	Timeout time.Duration
	// MaxIdleConns, MaxIdleConnsPerHost and IdleConnTimeout size the idle pool as in
	// http.Transport (MaxIdleConnsPerHost 0 is net/http's default of 2).
	MaxIdleConns, MaxIdleConnsPerHost int
	IdleConnTimeout                   time.Duration
	// HTTPSOnly refuses to send a request over anything but https, with the error "refusing to
	// <Refusing> over <scheme>": keys and provider documents over clear text could be forged.
	HTTPSOnly bool
	// Refusing names what is refused in HTTPSOnly's error, e.g. "fetch keys".
	Refusing string
	// MaxBody, when positive, caps every response body: reading past it fails with "response
	// larger than <MaxBody> bytes", so an endpoint that streams without end cannot exhaust
	// memory.
	MaxBody int64
}

// errNoCertificate is New's error for a CA that holds no PEM certificate.
var errNoCertificate = errors.New("ca: the file holds no PEM certificate")

// New builds a client with o's settings. Its CloseIdleConnections reaches the transport.
func New(o Options) (*http.Client, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CA != nil {
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(o.CA) {
			return nil, errNoCertificate
		}
		tlsConfig.RootCAs = roots
	} // else nil RootCAs: crypto/tls verifies against the system roots
	tr := &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     tlsConfig,
		TLSHandshakeTimeout: o.TLSHandshakeTimeout,
		MaxIdleConns:        o.MaxIdleConns,
		MaxIdleConnsPerHost: o.MaxIdleConnsPerHost,
		IdleConnTimeout:     o.IdleConnTimeout,
		DisableCompression:  true,
	}
	if o.DialTimeout > 0 {
		tr.DialContext = (&net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	var rt http.RoundTripper = tr
	if o.HTTPSOnly || o.MaxBody > 0 {
		rt = &guarded{tr: tr, httpsOnly: o.HTTPSOnly, refusing: o.Refusing, maxBody: o.MaxBody}
	}
	return &http.Client{
		Transport: rt,
		Timeout:   o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, nil
}

// Closer is a client a policy.Pool can share: closing it drops its idle connections, while
// requests in flight finish on theirs.
type Closer struct{ *http.Client }

// Close implements io.Closer.
func (c *Closer) Close() error {
	c.CloseIdleConnections()
	return nil
}

// Service builds the client of a service a policy calls for requests (forward_auth's auth
// service, mirror's shadow service): caFile (optional) is trusted besides the system roots,
// timeout bounds connecting, the handshake and the whole exchange, and the idle pool is sized
// for request-rate traffic. Sharing it through a policy.Pool by URL, CA and timeout lets a
// reload keep its connections.
func Service(caFile string, timeout time.Duration) (*Closer, error) {
	var ca []byte
	if caFile != "" {
		var err error
		if ca, err = ReadCA(caFile); err != nil {
			return nil, err
		}
	}
	c, err := New(Options{
		CA:                  ca,
		DialTimeout:         timeout,
		TLSHandshakeTimeout: timeout,
		Timeout:             timeout,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return &Closer{c}, nil
}

// CAKey is the part of a pooled client's key that names whom it trusts: the digest of its extra
// CA bundle, or "" for the system roots alone. A reload that keeps the bundle keeps the client.
func CAKey(pem []byte) string {
	if pem == nil {
		return ""
	}
	sum := sha256.Sum256(pem)
	return hex.EncodeToString(sum[:])
}

// ReadCA reads the PEM file at path for Options.CA. Its errors name the file: "ca: <read
// error>", or "ca: <path> holds no PEM certificate".
func ReadCA(path string) ([]byte, error) {
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("ca: %s holds no PEM certificate", path)
	}
	return pemBytes, nil
}

// guarded wraps the transport with Options.HTTPSOnly and Options.MaxBody.
type guarded struct {
	tr        *http.Transport
	httpsOnly bool
	refusing  string
	maxBody   int64
}

func (g *guarded) RoundTrip(r *http.Request) (*http.Response, error) {
	if g.httpsOnly && r.URL.Scheme != "https" {
		return nil, fmt.Errorf("refusing to %s over %s", g.refusing, r.URL.Scheme)
	}
	resp, err := g.tr.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	if g.maxBody > 0 {
		resp.Body = &cappedBody{ReadCloser: resp.Body, left: g.maxBody, max: g.maxBody}
	}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the transport.
func (g *guarded) CloseIdleConnections() { g.tr.CloseIdleConnections() }

// cappedBody fails the read after max bytes were read (a body of exactly max bytes may fail
// too): an answer that large is refused rather than trusted to be complete.
type cappedBody struct {
	io.ReadCloser
	left, max int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("response larger than %d bytes", b.max)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// CheckURL vets a configured service URL (an auth or shadow service): absolute http or https,
// no credentials (they end up in logs), no fragment (never sent). It reports whether the URL is
// https, which decides whether a CA file applies.
func CheckURL(raw string) (https bool, err error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return false, fmt.Errorf("url: %w", err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return false, fmt.Errorf("url %q: want an absolute http:// or https:// URL", raw)
	case u.User != nil:
		return false, errors.New("url: credentials in the URL end up in logs; use a CA-verified https URL or a private network instead")
	case u.Fragment != "":
		return false, fmt.Errorf("url %q: a fragment is never sent", raw)
	}
	return u.Scheme == "https", nil
}
