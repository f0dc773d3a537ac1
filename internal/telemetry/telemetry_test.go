package telemetry

import (
	"bufio"
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/limen-gateway/limen/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMetricConventions(t *testing.T) {
	m := NewMetrics()
	m.Route("r").Observe("GET", 200, time.Millisecond)
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	bounded := map[string]bool{"route": true, "method": true, "code": true, "upstream": true, "target": true, "kind": true, "policy": true, "result": true, "hash": true}
	for _, f := range families {
		name := f.GetName()
		if !strings.HasPrefix(name, "limen_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s lacks the limen_ prefix", name)
		}
		if f.GetHelp() == "" {
			t.Errorf("metric %s has no help", name)
		}
		if strings.HasPrefix(name, "limen_") {
			for _, metric := range f.GetMetric() {
				for _, l := range metric.GetLabel() {
					if !bounded[l.GetName()] {
						t.Errorf("metric %s has an unbounded label %s", name, l.GetName())
					}
				}
			}
		}
	}
}

func TestObserveAndRetain(t *testing.T) {
	m := NewMetrics()
	r := m.Route("users")
	r.Observe("GET", 200, time.Millisecond)
	r.Observe("GET", 200, time.Millisecond)
	r.Observe("BREW", 418, time.Millisecond)
	if got := counter(t, m, "users", "GET", "200"); got != 2 {
		t.Fatalf("GET 200 = %v", got)
	}
	if got := counter(t, m, "users", "OTHER", "418"); got != 1 {
		t.Fatalf("unknown method not folded into OTHER: %v", got)
	}
	m.RetainRoutes([]string{"orders"})
	if n := counter(t, m, "users", "GET", "200"); n != -1 {
		t.Fatalf("series of a removed route left: %v", n)
	}
}

func TestAccessLogWritesJSONWithoutQuery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := NewAccessLog(path, 16)
	if err != nil {
		t.Fatal(err)
	}
	ex := &policy.Exchange{Route: "r", RequestID: "id\"1", ClientIP: netip.MustParseAddr("192.0.2.1"), Start: time.Now().Add(-time.Millisecond)}
	r := httptest.NewRequest("GET", "/users/1?api_key=secret", nil)
	e := EntryFrom(ex, r, 200, 5, time.Now())
	l.Log(&e)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Log(&e) // after Close: dropped, never a panic
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		t.Fatal("no line written")
	}
	var got map[string]any
	if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
		t.Fatalf("invalid JSON %q: %v", sc.Text(), err)
	}
	if got["path"] != "/users/1" || got["request_id"] != "id\"1" || got["client_ip"] != "192.0.2.1" || got["status"] != float64(200) {
		t.Fatalf("entry %v", got)
	}
	if strings.Contains(sc.Text(), "secret") {
		t.Fatal("the query string reached the access log")
	}
}

// blockingWriter never returns, like a stuck disk.
type blockingWriter struct{ release chan struct{} }

func (b blockingWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

func TestAccessLogDropsWhenFull(t *testing.T) {
	bw := blockingWriter{release: make(chan struct{})}
	l := &AccessLog{w: bw, lines: make(chan *[]byte, 2), done: make(chan struct{})}
	go l.run()
	before := Dropped()
	e := Entry{Time: time.Now(), Method: "GET", Path: "/"}
	done := make(chan struct{})
	go func() {
		for range 50 {
			l.Log(&e)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Log blocked on a stuck writer")
	}
	if Dropped()-before < 40 {
		t.Fatalf("dropped %d, want most of 50", Dropped()-before)
	}
	close(bw.release)
	l.Close()
}

func BenchmarkObserve(b *testing.B) {
	r := NewMetrics().Route("bench")
	b.ReportAllocs()
	for b.Loop() {
		r.Observe("GET", 200, time.Millisecond)
	}
}

func BenchmarkAccessLogEncode(b *testing.B) {
	e := Entry{Time: time.Now(), Method: "GET", Host: "api.example.com", Path: "/users/42", Proto: "HTTP/1.1", Route: "users",
		Upstream: "users", Target: "http://10.0.0.1:9000", Attempts: 1, Status: 200, BytesOut: 512, Duration: time.Millisecond,
		RequestID: "0123456789abcdef0123456789abcdef", ClientIP: "203.0.113.9", UserAgent: "curl/8"}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.appendJSON(buf[:0])
	}
}

// counter reads limen_http_requests_total{route,method,code} from the registry, -1 when absent.
func counter(t *testing.T, m *Metrics, route, method, code string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "limen_http_requests_total" {
			continue
		}
		for _, metric := range f.GetMetric() {
			l := map[string]string{}
			for _, lp := range metric.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["route"] == route && l["method"] == method && l["code"] == code {
				return metric.GetCounter().GetValue()
			}
		}
	}
	return -1
}
