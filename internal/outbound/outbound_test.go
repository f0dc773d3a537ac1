package outbound

import (
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newTLSServer starts an https server on 127.0.0.1 and returns it with its certificate as PEM.
func newTLSServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, []byte) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv, ca
}

func mustNew(t *testing.T, o Options) *http.Client {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Do(req)
}

func TestExtraCATrusted(t *testing.T) {
	t.Parallel()
	srv, ca := newTLSServer(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

	resp, err := get(t, mustNew(t, Options{CA: ca, Timeout: 5 * time.Second}), srv.URL)
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Errorf("body %q", body)
	}

	if _, err := get(t, mustNew(t, Options{Timeout: 5 * time.Second}), srv.URL); err == nil {
		t.Error("without the CA, the test server's certificate was trusted")
	}
}

func TestBadCARejected(t *testing.T) {
	t.Parallel()
	for _, ca := range [][]byte{{}, []byte("not a certificate")} {
		if _, err := New(Options{CA: ca}); err == nil || err.Error() != "ca: the file holds no PEM certificate" {
			t.Errorf("CA %q: %v", ca, err)
		}
	}
}

func TestReadCA(t *testing.T) {
	t.Parallel()
	_, ca := newTLSServer(t, func(http.ResponseWriter, *http.Request) {})
	dir := t.TempDir()
	good, bad, missing := filepath.Join(dir, "good.pem"), filepath.Join(dir, "bad.pem"), filepath.Join(dir, "missing.pem")
	if err := os.WriteFile(good, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadCA(good); err != nil || string(b) != string(ca) {
		t.Errorf("good: %q %v", b, err)
	}
	if _, err := ReadCA(bad); err == nil || err.Error() != "ca: "+bad+" holds no PEM certificate" {
		t.Errorf("bad: %v", err)
	}
	if _, err := ReadCA(missing); err == nil || !strings.HasPrefix(err.Error(), "ca: ") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	var followed atomic.Bool
	srv, ca := newTLSServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	for _, o := range []Options{{CA: ca}, {CA: ca, HTTPSOnly: true, MaxBody: 1 << 10}} {
		resp, err := get(t, mustNew(t, o), srv.URL+"/start")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/elsewhere" {
			t.Errorf("got %d %q; want the redirect itself", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if followed.Load() {
		t.Error("a redirect was followed")
	}
}

func TestHTTPSOnly(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	defer plain.Close()

	_, err := get(t, mustNew(t, Options{HTTPSOnly: true, Refusing: "fetch keys"}), plain.URL)
	if err == nil || !strings.Contains(err.Error(), "refusing to fetch keys over http") {
		t.Errorf("over http: %v", err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("the server saw %d requests", n)
	}

	resp, err := get(t, mustNew(t, Options{}), plain.URL)
	if err != nil {
		t.Fatalf("without HTTPSOnly: %v", err)
	}
	resp.Body.Close()
}

func TestBodyCapped(t *testing.T) {
	t.Parallel()
	srv, ca := newTLSServer(t, func(w http.ResponseWriter, r *http.Request) {
		n := 100
		if r.URL.Path == "/huge" {
			n = 5000
		}
		_, _ = w.Write([]byte(strings.Repeat("x", n)))
	})
	c := mustNew(t, Options{CA: ca, HTTPSOnly: true, MaxBody: 1000})

	resp, err := get(t, c, srv.URL+"/small")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || len(body) != 100 {
		t.Errorf("small: %d bytes, %v", len(body), err)
	}

	resp, err = get(t, c, srv.URL+"/huge")
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || err.Error() != "response larger than 1000 bytes" || len(body) != 1000 {
		t.Errorf("huge: read %d bytes, %v", len(body), err)
	}
}

// TestCloseIdleConnections: http.Client.CloseIdleConnections reaches the transport through the
// https-only, capping wrapper, closing the connection the server sees idle.
func TestCloseIdleConnections(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{})
	var once sync.Once
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			once.Do(func() { close(closed) })
		}
	}
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c := mustNew(t, Options{CA: ca, HTTPSOnly: true, MaxBody: 1 << 10})
	if _, ok := c.Transport.(*guarded); !ok {
		t.Fatalf("transport %T; want the wrapper", c.Transport)
	}
	resp, err := get(t, c, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	c.CloseIdleConnections()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"https://auth.internal/check": "",
		"http://10.0.0.1:8080":        "",
		"auth.internal/check":         "want an absolute",
		"ftp://auth.internal":         "want an absolute",
		"https://u:p@auth.internal":   "credentials in the URL",
		"https://auth.internal/#x":    "fragment is never sent",
		"http://[::1":                 "url: ",
	} {
		https, err := CheckURL(raw)
		switch {
		case want == "" && (err != nil || https != strings.HasPrefix(raw, "https:")):
			t.Errorf("%s: https=%v err=%v", raw, https, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: err=%v, want one containing %q", raw, err, want)
		}
	}
}
