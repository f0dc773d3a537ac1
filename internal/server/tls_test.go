package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"
)

// selfSigned makes a certificate for name that is its own root.
func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

type pki struct {
	a, b  tls.Certificate
	roots *x509.CertPool
}

func newPKI(t *testing.T) pki {
	a, la := selfSigned(t, "a.test")
	b, lb := selfSigned(t, "b.test")
	roots := x509.NewCertPool()
	roots.AddCert(la)
	roots.AddCert(lb)
	return pki{a, b, roots}
}

func tlsClient(p pki, serverName string, h2 bool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.roots, ServerName: serverName}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestTLSSNIAndALPN(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	rc := newRecorder()
	spec := baseSpec("tls", Hygiene{})
	spec.H2 = true
	spec.TLS = &TLSSpec{Certificates: []tls.Certificate{p.a, p.b}}
	s := startWith(t, rc, spec)
	addr := s.Addr("tls").String()
	for _, tc := range []struct {
		name  string
		h2    bool
		proto int
	}{{"a.test", true, 2}, {"b.test", true, 2}, {"b.test", false, 1}} {
		c := tlsClient(p, tc.name, tc.h2)
		resp := get(t, c, "https://"+addr+"/x/../y")
		c.CloseIdleConnections()
		if resp.ProtoMajor != tc.proto || resp.TLS.PeerCertificates[0].DNSNames[0] != tc.name || resp.Header.Get("X-Path") != "/y" {
			t.Errorf("%s h2=%v: proto %d, cert %v, path %q", tc.name, tc.h2, resp.ProtoMajor, resp.TLS.PeerCertificates[0].DNSNames, resp.Header.Get("X-Path"))
		}
	}
	for _, s := range rc.all() {
		if !s.tls {
			t.Error("the dispatcher saw a request without r.TLS")
		}
	}
	// HTTP/1 over TLS goes through the framing guard.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.roots, ServerName: "a.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := codes(readAll(t, conn, "GET /ok HTTP/1.1\r\nHost: a.test\r\n\r\nPOST /a HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n"))
	if got != "200 , 400 ambiguous_framing" {
		t.Fatalf("HTTP/1 over TLS: %s", got)
	}
	// A plaintext request to the TLS port gets a plain 400.
	plain := codes(rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if plain != "400 " {
		t.Errorf("plaintext to TLS: %s", plain)
	}
}

func TestTLSCertificatesSwapInPlace(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	spec := baseSpec("tls", Hygiene{})
	spec.TLS = &TLSSpec{Certificates: []tls.Certificate{p.a}}
	s := startWith(t, newRecorder(), spec)
	addr := s.Addr("tls").String()
	old := tlsClient(p, "b.test", false)
	old.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true // a.test answers for b.test
	defer old.CloseIdleConnections()
	if resp := get(t, old, "https://"+addr+"/1"); resp.TLS.PeerCertificates[0].DNSNames[0] != "a.test" {
		t.Fatal("wrong first certificate")
	}
	spec.TLS = &TLSSpec{Certificates: []tls.Certificate{p.b}}
	if err := s.Apply([]ListenerSpec{spec}); err != nil {
		t.Fatal(err)
	}
	if s.Addr("tls").String() != addr {
		t.Fatal("the socket moved")
	}
	if resp := get(t, old, "https://"+addr+"/2"); resp.TLS.PeerCertificates[0].DNSNames[0] != "a.test" {
		t.Error("the open connection was re-established") // kept alive: same handshake
	}
	c := tlsClient(p, "b.test", false)
	defer c.CloseIdleConnections()
	if resp := get(t, c, "https://"+addr+"/3"); resp.TLS.PeerCertificates[0].DNSNames[0] != "b.test" {
		t.Error("new handshakes still use the old certificate")
	}
}

func TestH2CPriorKnowledge(t *testing.T) {
	t.Parallel()
	spec := baseSpec("h2c", Hygiene{})
	spec.H2C = true
	rc := newRecorder()
	s := startWith(t, rc, spec, baseSpec("plain", Hygiene{}))
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp := get(t, c, "http://"+s.Addr("h2c").String()+"/a//b")
	if resp.ProtoMajor != 2 || resp.Header.Get("X-Path") != "/a/b" {
		t.Fatalf("h2c: proto %d, path %q", resp.ProtoMajor, resp.Header.Get("X-Path"))
	}
	// HTTP/1 still works on the h2c listener, through the guard.
	if got := codes(rawExchange(t, s.Addr("h2c").String(), closeReq)); got != "200 " {
		t.Errorf("HTTP/1 on the h2c listener: %s", got)
	}
	// Without h2c the preface is answered 505 and the connection closed.
	got := codes(rawExchange(t, s.Addr("plain").String(), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"))
	if got != "505 h2c_disabled" {
		t.Fatalf("prior knowledge without h2c: %s", got)
	}
	var _ net.Conn = (*tlsGuardConn)(nil)
}
