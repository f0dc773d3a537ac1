package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/redistest"
)

// TestThreeProcessesShareRedis runs three real limen processes against one real redis-server:
// load spread over them is admitted exactly up to the shared limit, and after two of them stop
// gracefully the usage totals equal the requests served, exactly.
func TestThreeProcessesShareRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three processes")
	}
	srv := redistest.Start(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "limen")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	const key = "acme-multinode-key-0123"
	sum := sha256.Sum256([]byte(key))
	adminAddr := freeAddr(t)
	type node struct {
		addr string
		cmd  *exec.Cmd
		logs *strings.Builder
	}
	var nodes []*node
	for i := range 3 {
		n := &node{addr: freeAddr(t), logs: &strings.Builder{}}
		admin := ""
		if i == 0 {
			admin = fmt.Sprintf("admin: { addr: %q }", adminAddr)
		}
		cfg := fmt.Sprintf(`
listeners: [{ name: public, addr: %q }]
%s
state: { redis: { url: %q } }
usage: { flush_interval: 1h }
consumers: [{ name: acme, credentials: { api_keys: [{ sha256: %q }] } }]
routes:
  - name: api
    match: { path: /api }
    respond: { body: "ok" }
    policies:
      - api_key: {}
      - rate_limit: { backend: redis, key: [consumer], limits: [{ requests: 100, per: 1h }] }
logging: { access: { output: "off" } }
`, n.addr, admin, srv.URL(), hex.EncodeToString(sum[:]))
		path := filepath.Join(dir, fmt.Sprintf("node%d.yaml", i))
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		n.cmd = exec.Command(bin, "run", "-c", path)
		n.cmd.Stdout, n.cmd.Stderr = io.Discard, n.logs
		if err := n.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.cmd.Process.Kill(); n.cmd.Wait() })
		nodes = append(nodes, n)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	get := func(n *node) int {
		req, _ := http.NewRequest("GET", "http://"+n.addr+"/api", nil)
		req.Header.Set("X-API-Key", key)
		resp, err := c.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, n := range nodes {
		deadline := time.Now().Add(15 * time.Second)
		for {
			req, _ := http.NewRequest("GET", "http://"+n.addr+"/nothing-here", nil)
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s did not start; logs:\n%s", n.addr, n.logs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				s := get(nodes[(w+j)%3])
				mu.Lock()
				codes[s]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if codes[200] != 100 || codes[429] != 200 {
		t.Fatalf("300 requests over 3 processes: %v; want exactly 100 admitted", codes)
	}
	for _, n := range nodes[1:] {
		n.cmd.Process.Signal(syscall.SIGTERM)
		if err := n.cmd.Wait(); err != nil {
			t.Fatalf("graceful stop: %v; logs:\n%s", err, n.logs)
		}
	}
	resp, err := c.Get("http://" + adminAddr + "/admin/usage?group_by=consumer,status")
	if err != nil {
		t.Fatal(err)
	}
	var report struct {
		Rows []struct {
			Consumer string
			Status   string
			Requests int64
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&report)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, r := range report.Rows {
		got[r.Consumer+"/"+r.Status] = r.Requests
	}
	if got["acme/2xx"] != 100 || got["acme/4xx"] != 200 {
		t.Fatalf("usage totals %v, want acme/2xx 100 and acme/4xx 200 exactly", got)
	}
}
