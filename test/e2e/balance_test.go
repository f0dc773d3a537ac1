package e2e

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestHashOnHeaderSticksAClientToOneBackend: balance: hash on a header sends every request of a
// client to the same backend, and different clients to different backends.
func TestHashOnHeaderSticksAClientToOneBackend(t *testing.T) {
	a, b, c := backend(t, echo("a")), backend(t, echo("b")), backend(t, echo("c"))
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app:
    targets: [{ url: "{{.a}}" }, { url: "{{.b}}" }, { url: "{{.c}}" }]
    balance: hash
    hash_on: "header:X-User"
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"a": a.URL, "b": b.URL, "c": c.URL})
	cl := client()
	defer cl.CloseIdleConnections()
	send := func(user string) string {
		req, _ := http.NewRequest(http.MethodGet, x.url("public", "/"), nil)
		if user != "" {
			req.Header.Set("X-User", user)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Backend")
	}
	home := map[string]string{}
	used := map[string]int{}
	for round := range 5 {
		for i := range 30 {
			user := fmt.Sprintf("user-%d", i)
			got := send(user)
			if round > 0 && got != home[user] {
				t.Fatalf("%s went to %s after %s", user, got, home[user])
			}
			home[user] = got
			if round == 0 {
				used[got]++
			}
		}
	}
	if len(used) < 2 {
		t.Fatalf("30 users all on %v", used)
	}
	// Without the header, requests are balanced round robin.
	rr := map[string]int{}
	for range 30 {
		rr[send("")]++
	}
	if rr["a"] != 10 || rr["b"] != 10 || rr["c"] != 10 {
		t.Fatalf("requests without the header: %v, want 10 each", rr)
	}
}

// TestEWMAShiftsTrafficAwayFromASlowBackend: a backend that takes 50ms to answer gets a small
// share of the traffic under balance: ewma, where round robin would give it half.
func TestEWMAShiftsTrafficAwayFromASlowBackend(t *testing.T) {
	fast := backend(t, echo("fast"))
	slow := backend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		echo("slow")(w, r)
	})
	x := start(t, `
listeners: [{ name: public, addr: "127.0.0.1:0" }]
upstreams:
  app:
    targets: [{ url: "{{.fast}}" }, { url: "{{.slow}}" }]
    balance: ewma
    ewma_decay: 1s
routes:
  - { name: all, match: { path: "/{p...}" }, upstream: app }
`, map[string]any{"fast": fast.URL, "slow": slow.URL})
	cl := client()
	defer cl.CloseIdleConnections()
	const workers, each = 4, 50
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				resp, err := cl.Get(x.url("public", "/"))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				counts[resp.Header.Get("X-Backend")]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if counts["fast"]+counts["slow"] != workers*each {
		t.Fatalf("counts %v", counts)
	}
	// Round robin would send the slow backend 100 of 200; it gets its first, neutral requests
	// and then only what its decaying estimate wins back.
	if counts["slow"] > workers*each/4 {
		t.Fatalf("slow backend got %d of %d requests (%v)", counts["slow"], workers*each, counts)
	}
	t.Logf("requests per backend: %v", counts)
}
