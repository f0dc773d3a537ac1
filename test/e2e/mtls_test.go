package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// clientCA is a certificate authority that issues client certificates in a test.
type clientCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newClientCA(t *testing.T, dir, name string) *clientCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, name+".pem")
	os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return &clientCA{cert: cert, key: key, file: file}
}

func (ca *clientCA) issue(t *testing.T, cn, uri string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if uri != "" {
		u, _ := url.Parse(uri)
		tpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

const mtlsConfig = `
listeners:
  - name: tls
    addr: "127.0.0.1:0"
    tls:
      certificates:
        - { cert: "{{.pubCert}}", key: "{{.pubKey}}" }
        - { cert: "{{.intCert}}", key: "{{.intKey}}", client_auth: { ca: "{{.ca}}", mode: require } }
        - { cert: "{{.optCert}}", key: "{{.optKey}}", client_auth: { ca: "{{.ca}}", mode: optional } }
upstreams:
  app: { targets: [{ url: "{{.app}}" }] }
consumers:
  - name: billing
    groups: [internal]
    credentials: { certificates: [{ uri: "spiffe://acme/billing" }] }
routes:
  - name: internal
    match: { hosts: [internal.example.com, opt.example.com], path: "/{p...}" }
    upstream: app
    policies:
      - mtls: { forward_certificate: true }
      - require: { groups: [internal] }
  - name: public
    match: { hosts: [www.example.com], path: "/{p...}" }
    upstream: app
`

// TestMutualTLS: client certificates verified per SNI, identity from the verified chain mapped
// to a consumer, and a request for a name the connection was not set up for refused with 421.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pubCert, pubKey, _ := writeCert(t, dir, "pub", "www.example.com")
	intCert, intKey, _ := writeCert(t, dir, "int", "internal.example.com")
	optCert, optKey, _ := writeCert(t, dir, "opt", "opt.example.com")
	ca := newClientCA(t, dir, "clients")
	rogue := newClientCA(t, dir, "rogue")
	x := start(t, mtlsConfig, map[string]any{"app": backend(t, echo("app")).URL, "ca": ca.file,
		"pubCert": pubCert, "pubKey": pubKey, "intCert": intCert, "intKey": intKey, "optCert": optCert, "optKey": optKey})
	addr := x.addr("tls")
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustRead(t, pubCert))
	roots.AppendCertsFromPEM(mustRead(t, intCert))
	roots.AppendCertsFromPEM(mustRead(t, optCert))

	do := func(sni, host string, cert *tls.Certificate) (*http.Response, error) {
		cfg := &tls.Config{RootCAs: roots, ServerName: sni}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://"+sni+"/x", nil)
		req.Host = host
		req.Header.Set("X-Forwarded-Client-Cert", "Hash=forged;URI=spiffe://acme/admin")
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	billing := ca.issue(t, "billing", "spiffe://acme/billing")
	stranger := ca.issue(t, "stranger", "spiffe://acme/stranger")
	forged := rogue.issue(t, "billing", "spiffe://acme/billing") // same names, wrong issuer

	resp, err := do("internal.example.com", "internal.example.com", &billing)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("billing's certificate: %v %v", err, resp)
	}
	if got := resp.Header.Get("X-Seen-X-Consumer-Id"); got != "billing" {
		t.Errorf("consumer %q, want billing", got)
	}
	if xf := resp.Header.Get("X-Seen-X-Forwarded-Client-Cert"); xf == "" || xf == "Hash=forged;URI=spiffe://acme/admin" {
		t.Errorf("X-Forwarded-Client-Cert %q: want the verified certificate's, never the client's", xf)
	}
	if _, err := do("internal.example.com", "internal.example.com", nil); err == nil {
		t.Error("a require listener completed a request without a client certificate")
	}
	if _, err := do("internal.example.com", "internal.example.com", &forged); err == nil {
		t.Error("a certificate from another CA was accepted")
	}
	// Verified but not a consumer of group internal: the route's require refuses it.
	if resp, err := do("internal.example.com", "internal.example.com", &stranger); err != nil || resp.StatusCode != 403 {
		t.Errorf("stranger: %v %v, want 403", err, resp)
	}
	// Domain fronting: a connection set up for the public name, without a client certificate,
	// asks for the internal host. The certificate that name requires was never checked.
	if resp, err := do("www.example.com", "internal.example.com", nil); err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("fronted request: %v %v, want 421", err, resp)
	}
	if resp, err := do("www.example.com", "www.example.com", nil); err != nil || resp.StatusCode != 200 {
		t.Errorf("public name: %v %v", err, resp)
	}
	// Optional client auth: the handshake succeeds without a certificate and the mtls policy
	// refuses; with one it passes.
	if resp, err := do("opt.example.com", "opt.example.com", nil); err != nil || resp.StatusCode != 403 {
		t.Errorf("optional without a certificate: %v %v, want 403 from the policy", err, resp)
	}
	if resp, err := do("opt.example.com", "opt.example.com", &billing); err != nil || resp.StatusCode != 200 {
		t.Errorf("optional with a certificate: %v %v", err, resp)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
