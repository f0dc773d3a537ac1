package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestStartFailureLeavesNothingRunning: a config that fails to load must not leave the file
// watcher's goroutine and inotify descriptor behind, nor a bound socket.
func TestStartFailureLeavesNothingRunning(t *testing.T) {
	defer goleak.VerifyNone(t)
	path := filepath.Join(t.TempDir(), "limen.yaml")
	cfg := `listeners: [{ name: public, addr: "127.0.0.1:0" }]
routes:
  - { name: r, match: { path: /x }, upstream: missing }
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := Start(Options{Path: path, NoSignals: true})
	if err == nil {
		_ = g.Shutdown(context.Background())
		t.Fatal("a route naming an undefined upstream started")
	}
	if !strings.Contains(err.Error(), "missing") {
		t.Errorf("error %q does not name the undefined upstream", err)
	}
}

// TestStartAndShutdown: a good config starts, serves its listener and stops every goroutine
// it started (watcher, server) on Shutdown.
func TestStartAndShutdown(t *testing.T) {
	defer goleak.VerifyNone(t)
	path := filepath.Join(t.TempDir(), "limen.yaml")
	cfg := `listeners: [{ name: public, addr: "127.0.0.1:0" }]
routes:
  - { name: r, match: { path: /x }, respond: { status: 204 } }
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g, err := Start(Options{Path: path, NoSignals: true})
	if err != nil {
		t.Fatal(err)
	}
	if g.Addr("public") == nil {
		t.Error("listener public is not bound")
	}
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
