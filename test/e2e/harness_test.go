// Package e2e drives the whole gateway over real sockets: it starts the same wiring cmd/limen
// runs (internal/gateway) from a YAML fixture, with real backends on 127.0.0.1.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"go.uber.org/goleak"

	"github.com/limen-gateway/limen/internal/gateway"
	_ "github.com/limen-gateway/limen/policies/all"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// httptest servers' and the net/http transport's idle connections close asynchronously.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

// gw is a gateway under test.
type gw struct {
	t    *testing.T
	g    *gateway.Gateway
	path string
	vars map[string]any
}

// start renders tpl (text/template with vars) into a config file and starts a gateway on it.
func start(t *testing.T, tpl string, vars map[string]any) *gw {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "limen.yaml")
	x := &gw{t: t, path: path, vars: vars}
	x.write(tpl)
	g, err := gateway.Start(gateway.Options{Path: path, NoSignals: true, WatchDebounce: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	x.g = g
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
	})
	return x
}

func render(t *testing.T, tpl string, vars map[string]any) []byte {
	t.Helper()
	tmpl, err := template.New("cfg").Option("missingkey=error").Parse(tpl)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, vars); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// write replaces the config file atomically (as editors and ConfigMaps do).
func (x *gw) write(tpl string) {
	x.t.Helper()
	data := render(x.t, tpl, x.vars)
	if !bytes.Contains(data, []byte("\nlogging:")) {
		data = append(data, "\nlogging: { access: { output: off } }\n"...)
	}
	tmp := x.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		x.t.Fatal(err)
	}
	if err := os.Rename(tmp, x.path); err != nil {
		x.t.Fatal(err)
	}
}

// reload writes tpl and reloads synchronously, returning the runtime's verdict.
func (x *gw) reload(tpl string) error {
	x.write(tpl)
	return x.g.Runtime.Load("test")
}

func (x *gw) addr(listener string) string {
	x.t.Helper()
	a := x.g.Addr(listener)
	if a == nil {
		x.t.Fatalf("no listener %q", listener)
	}
	return a.String()
}

func (x *gw) url(listener, path string) string { return "http://" + x.addr(listener) + path }

// backend starts a real HTTP server on 127.0.0.1.
func backend(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// echo answers with what it received, so tests can see what the gateway sent upstream.
func echo(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-Path", r.URL.EscapedPath())
		w.Header().Set("X-Seen-Query", r.URL.RawQuery)
		w.Header().Set("X-Seen-Host", r.Host)
		for k, v := range r.Header {
			w.Header()["X-Seen-"+k] = v
		}
		fmt.Fprintf(w, "%s %s %s", name, r.Method, body)
	}
}

func client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}
}

func get(t *testing.T, url string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	c := client()
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readBody(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// raw sends bytes on a fresh connection and returns the first response and whether the
// connection was closed after it (read within a short deadline).
func raw(t *testing.T, addr, request string) (*http.Response, string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", request, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = br.ReadByte()
	closed := err == io.EOF || (err != nil && !isTimeout(err))
	return resp, string(body), closed
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
