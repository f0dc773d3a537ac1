package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const reloadConfig = `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app: { targets: [{ url: "{{.app}}" }] }
routes:
  - name: app
    match: { path: "/{p...}" }
    upstream: app
    policies:
      - response_headers: { set: { X-Version: "{{.version}}" } }
`

func TestReloadUnderLoadDropsNothing(t *testing.T) {
	app := backend(t, echo("app"))
	vars := map[string]any{"app": app.URL, "version": "v0"}
	x := start(t, reloadConfig, vars)
	url := x.url("public", "/load")

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client()
			defer c.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := 1; i <= 30; i++ {
		x.vars["version"] = "v" + string(rune('0'+i%10))
		if err := x.reload(reloadConfig); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during reloads; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests ran", ok.Load())
	}
}

func TestBadReloadKeepsOldConfig(t *testing.T) {
	app := backend(t, echo("app"))
	x := start(t, reloadConfig, map[string]any{"app": app.URL, "version": "good"})
	err := x.reload(`
listeners: [{ name: public, addr: "127.0.0.1:0" }]
routes:
  - name: broken
    match: { pathh: /x }
    upstream: missing
`)
	if err == nil {
		t.Fatal("a broken config was accepted")
	}
	for _, want := range []string{"limen.yaml:5", `unknown field "pathh"`, `no upstream named "missing"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	resp := get(t, x.url("public", "/still"))
	readBody(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("X-Version") != "good" {
		t.Fatalf("after a bad reload: %d version %q; the old config must keep serving", resp.StatusCode, resp.Header.Get("X-Version"))
	}
	st, _ := json.Marshal(x.g.Runtime.Status())
	if !strings.Contains(string(st), `"ok":false`) || !strings.Contains(string(st), "pathh") {
		t.Errorf("status does not show the failed reload: %s", st)
	}
}

func TestFileWatchReloads(t *testing.T) {
	app := backend(t, echo("app"))
	x := start(t, reloadConfig, map[string]any{"app": app.URL, "version": "one"})
	x.vars["version"] = "two"
	x.write(reloadConfig)
	eventually(t, 5*time.Second, "the file watcher to apply the new config", func() bool {
		resp := get(t, x.url("public", "/"))
		readBody(t, resp)
		return resp.Header.Get("X-Version") == "two"
	})
}

// TestThousandReloadsWithWebSocketOpen: a WebSocket on a kept route survives every reload, and
// goroutines and heap come back to where they started.
func TestThousandReloadsWithWebSocketOpen(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 reloads")
	}
	ws := backend(t, func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})
	vars := map[string]any{"app": ws.URL, "version": "a"}
	x := start(t, reloadConfig, vars)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+x.addr("public")+"/ws", nil)
	if err != nil {
		t.Fatalf("websocket through the gateway: %v", err)
	}
	defer conn.CloseNow()
	roundTrip := func(msg string) {
		t.Helper()
		if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write: %v", err)
		}
		_, got, err := conn.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("read %q, %v; want %q", got, err, msg)
		}
	}
	roundTrip("before")
	// Warm up, then take the baseline.
	for i := range 20 {
		vars["version"] = []string{"a", "b"}[i%2]
		if err := x.reload(reloadConfig); err != nil {
			t.Fatal(err)
		}
	}
	baseG, baseHeap := settle()
	for i := range 1000 {
		vars["version"] = []string{"a", "b"}[i%2]
		if err := x.reload(reloadConfig); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	roundTrip("after 1000 reloads")
	var g int
	var heap uint64
	eventually(t, 10*time.Second, "goroutines and heap back at baseline", func() bool {
		g, heap = settle()
		return g <= baseG+2 && heap <= baseHeap+baseHeap/2+4<<20
	})
	t.Logf("goroutines %d -> %d, heap %d KiB -> %d KiB", baseG, g, baseHeap>>10, heap>>10)
	if keys := len(x.g.Runtime.Pool().Keys()); keys > 10 {
		t.Errorf("pool holds %d objects after 1,000 reloads: %v", keys, x.g.Runtime.Pool().Keys())
	}
}

func settle() (int, uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapAlloc
}
