package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for names into dir and returns the file paths and a
// pool trusting it.
func writeCert(t *testing.T, dir, base string, names ...string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, base+".pem"), filepath.Join(dir, base+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestHTTP2OverTLSWithSNI(t *testing.T) {
	app := backend(t, echo("app"))
	dir := t.TempDir()
	aCert, aKey, aPool := writeCert(t, dir, "a", "a.example.com")
	bCert, bKey, bPool := writeCert(t, dir, "b", "b.example.com")
	x := start(t, `
listeners:
  - name: tls
    addr: "127.0.0.1:0"
    tls:
      certificates: [{ cert: "{{.aCert}}", key: "{{.aKey}}" }, { cert: "{{.bCert}}", key: "{{.bKey}}" }]
upstreams:
  app: { targets: [{ url: "{{.app}}" }] }
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"app": app.URL, "aCert": aCert, "aKey": aKey, "bCert": bCert, "bKey": bKey})
	addr := x.addr("tls")
	for _, c := range []struct {
		host string
		pool *x509.CertPool
	}{{"a.example.com", aPool}, {"b.example.com", bPool}} {
		tr := &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: c.pool, ServerName: c.host},
			ForceAttemptHTTP2: true,
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + c.host + "/x")
		if err != nil {
			t.Fatalf("%s: %v (the certificate for the SNI name must be chosen)", c.host, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.ProtoMajor != 2 || resp.Header.Get("X-Backend") != "app" {
			t.Fatalf("%s: proto %s backend %q, want HTTP/2 to app", c.host, resp.Proto, resp.Header.Get("X-Backend"))
		}
		if got := resp.Header.Get("X-Seen-X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto %q, want https", got)
		}
	}
}

func TestH2CPriorKnowledgeWhenEnabled(t *testing.T) {
	app := backend(t, echo("app"))
	x := start(t, `
listeners:
  - { name: plain, addr: "127.0.0.1:0" }
  - { name: h2c, addr: "127.0.0.1:0", protocols: [http1, h2c] }
upstreams:
  app: { targets: [{ url: "{{.app}}" }] }
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"app": app.URL})
	h2c := func(addr string) (*http.Response, error) {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		return (&http.Client{Transport: tr, Timeout: 3 * time.Second}).Get("http://" + addr + "/x")
	}
	resp, err := h2c(x.addr("h2c"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2", resp.Proto)
	}
	if resp, err := h2c(x.addr("plain")); err == nil {
		resp.Body.Close()
		t.Fatal("h2c prior knowledge accepted on a listener that did not enable it")
	}
}

func TestServerSentEventsStreamUnbuffered(t *testing.T) {
	release := make(chan struct{})
	sse := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "data: second\n\n")
	})
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app: { targets: [{ url: "{{.app}}" }] }
routes:
  - name: events
    match: { path: /events }
    upstream: app
    policies: [{ response_headers: { set: { X-Stream: "yes" } } }]
`, map[string]any{"app": sse.URL})
	defer close(release)
	resp := get(t, x.url("public", "/events"))
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event %q, %v: the gateway buffered the stream", line, err)
	}
	if resp.Header.Get("X-Stream") != "yes" {
		t.Error("response_headers not applied to a streamed response")
	}
}

func TestTrailersPassThrough(t *testing.T) {
	tr := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(200)
		io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc123")
	})
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app: { targets: [{ url: "{{.app}}" }] }
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"app": tr.URL})
	resp := get(t, x.url("public", "/"))
	if b := readBody(t, resp); b != "body" {
		t.Fatalf("body %q", b)
	}
	if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
		t.Fatalf("trailer %q, want abc123", got)
	}
}

func TestGracefulShutdownCompletesInFlight(t *testing.T) {
	started := make(chan struct{})
	slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "finished")
	})
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
server: { grace: 5s }
upstreams:
  app: { targets: [{ url: "{{.app}}" }] }
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"app": slow.URL})
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client().Get(x.url("public", "/slow"))
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{string(b), err}
	}()
	<-started
	addr := x.addr("public")
	if err := x.g.Shutdown(context.Background()); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	r := <-done
	if r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request got %q, %v; want it to finish", r.body, r.err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
}

func TestMalformedClientBodyIs400(t *testing.T) {
	app := backend(t, echo("app"))
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app: { targets: [{ url: "{{.app}}" }] }
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"app": app.URL})
	resp, body, _ := raw(t, x.addr("public"), "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
	if resp.StatusCode != 400 {
		t.Fatalf("status %d (body %q), want 400: a broken client body is the client's fault, not a 502", resp.StatusCode, body)
	}
	if strings.Contains(body, "upstream") {
		t.Errorf("body blames the upstream: %q", body)
	}
}

// TestGRPCStylePassThroughH2C proxies an HTTP/2 cleartext exchange with grpc-status trailers, as
// a gRPC call looks on the wire, from an h2c client through the gateway to an h2c upstream.
func TestGRPCStylePassThroughH2C(t *testing.T) {
	grpcish := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 || r.Header.Get("Content-Type") != "application/grpc" {
			http.Error(w, "want h2 grpc", 400)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
		w.Write(body)
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("Grpc-Message", "ok")
	}))
	grpcish.Config.Protocols = new(http.Protocols)
	grpcish.Config.Protocols.SetUnencryptedHTTP2(true)
	grpcish.Start()
	defer grpcish.Close()
	x := start(t, `
listeners: [{ name: grpc, addr: "127.0.0.1:0", protocols: [h2c] }]
upstreams:
  svc: { targets: [{ url: "{{.svc}}" }], protocol: h2c }
routes:
  - { name: svc, match: { path: "/pkg.Service/{method}", methods: [POST] }, upstream: svc }
`, map[string]any{"svc": grpcish.URL})
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", "http://"+x.addr("grpc")+"/pkg.Service/Echo", strings.NewReader("\x00\x00\x00\x00\x02hi"))
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "\x00\x00\x00\x00\x02hi" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("proto %s body %q trailer %v status %d", resp.Proto, body, resp.Trailer, resp.StatusCode)
	}
	// A refused gRPC call gets a gRPC status, not an HTML or JSON body.
	req, _ = http.NewRequest("POST", "http://"+x.addr("grpc")+"/pkg.Other/Echo", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/grpc")
	resp, err = (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "12" {
		t.Fatalf("unrouted gRPC call: %d grpc-status %q", resp.StatusCode, resp.Header.Get("Grpc-Status"))
	}
}

// TestUpstreamMutualTLS: the gateway verifies the upstream against a private CA with a chosen
// server name and presents a client certificate the upstream requires.
func TestUpstreamMutualTLS(t *testing.T) {
	dir := t.TempDir()
	srvCert, srvKey, _ := writeCert(t, dir, "backend", "backend.internal")
	cliCert, cliKey, cliPool := writeCert(t, dir, "gateway", "gateway.internal")
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	backend.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: cliPool}
	backend.StartTLS()
	defer backend.Close()
	cfg := `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  secure:
    targets: [{ url: "{{.url}}" }]
    tls: { ca: "{{.ca}}", server_name: backend.internal {{.client}} }
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: secure }
`
	vars := map[string]any{"url": backend.URL, "ca": srvCert, "client": ", cert: " + cliCert + ", key: " + cliKey}
	x := start(t, cfg, vars)
	resp := get(t, x.url("public", "/"))
	if body := readBody(t, resp); resp.StatusCode != 200 || body != "hello gateway.internal" {
		t.Fatalf("mTLS upstream: %d %q", resp.StatusCode, body)
	}
	// Without the client certificate the upstream refuses the handshake: a 502, never a bypass.
	vars["client"] = ""
	if err := x.reload(cfg); err != nil {
		t.Fatal(err)
	}
	resp = get(t, x.url("public", "/"))
	readBody(t, resp)
	if resp.StatusCode != 502 {
		t.Fatalf("without a client certificate: %d, want 502", resp.StatusCode)
	}
}
