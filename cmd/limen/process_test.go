package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBinarySignals runs the real binary: it serves, reloads on SIGHUP, and on SIGTERM fails
// readiness, lets an in-flight request finish and exits 0, its batched access log written to the
// last line.
func TestBinarySignals(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "limen")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	release := make(chan struct{})
	var once bool
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	defer func() {
		if !once {
			close(release)
		}
	}()

	public, adminAddr := freeAddr(t), freeAddr(t)
	cfg := func(v string) string {
		return fmt.Sprintf(`
listeners: [{ name: public, addr: "%s" }]
admin: { addr: "%s" }
server: { shutdown_delay: 300ms, grace: 10s }
logging: { access: { output: "%s" } }
upstreams:
  app: { targets: [{ url: "%s" }] }
routes:
  - name: app
    match: { path: "/{p...}" }
    upstream: app
    policies: [{ response_headers: { set: { X-Version: "%s" } } }]
`, public, adminAddr, filepath.Join(dir, "access.log"), backend.URL, v)
	}
	path := filepath.Join(dir, "limen.yaml")
	os.WriteFile(path, []byte(cfg("one")), 0o600)
	cmd := exec.Command(bin, "run", "-c", path)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	c := &http.Client{Timeout: 5 * time.Second}
	var answered atomic.Int64 // requests the gateway answered: each is one access log line
	version := func() string {
		resp, err := c.Get("http://" + public + "/v")
		if err != nil {
			return ""
		}
		answered.Add(1)
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.Header.Get("X-Version")
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if cond() {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
	}
	waitFor("the gateway to serve", func() bool { return version() == "one" })

	os.WriteFile(path, []byte(cfg("two")), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("SIGHUP reload", func() bool { return version() == "two" })

	slow := make(chan string, 1)
	go func() {
		resp, err := c.Get("http://" + public + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		answered.Add(1)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGTERM)
	ready := func() int {
		req, _ := http.NewRequest("GET", "http://"+adminAddr+"/readyz", nil)
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor("readiness to fail first", func() bool { return ready() == http.StatusServiceUnavailable })
	once = true
	close(release)
	if got := <-slow; got != "ok" {
		t.Fatalf("in-flight request during drain got %q", got)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("limen did not exit after SIGTERM")
	}
	log, err := os.ReadFile(filepath.Join(dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(log), "\n"); int64(lines) != answered.Load() {
		t.Fatalf("access log has %d lines after shutdown, want one per answered request: %d", lines, answered.Load())
	}
}
