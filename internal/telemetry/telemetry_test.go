package telemetry

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

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

func TestAccessLogDropsWhenFull(t *testing.T) {
	// A pipe nobody reads: the writer goroutine blocks on its first write, like a stuck disk.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	l := newAccessLog(pw, pw, 2)
	before := Dropped()
	e := Entry{Time: time.Now(), Method: "GET", Path: "/", UserAgent: strings.Repeat("x", 32<<10)}
	done := make(chan struct{})
	go func() {
		for range 50 {
			l.Log(&e)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a stuck writer")
	}
	if n := Dropped() - before; n < 40 {
		t.Fatalf("dropped %d, want most of 50", n)
	}
	// Unblock the writer: reading end gone, writes fail, the queue drains and Close returns.
	pr.Close()
	if err := l.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		t.Logf("close: %v", err)
	}
	m := NewMetrics()
	if v := gauge(t, m, "limen_access_log_dropped_total"); v < 40 {
		t.Fatalf("limen_access_log_dropped_total = %v", v)
	}
}

func TestAccessLogEscaping(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"quote":   `a"b`,
		"slash":   `a\b`,
		"control": "a\x00\n\t\x1fb",
		"invalid": "a\xff\xfeb",
		"unicode": "héllo ✓ 🎉",
		"html":    "<script>&",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := appendString(nil, in)
			var out string
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatalf("%q encoded as invalid JSON %s: %v", in, b, err)
			}
			if want := perByteValid(in); out != want {
				t.Fatalf("round trip %q -> %s -> %q, want %q", in, b, out, want)
			}
		})
	}
}

func TestEntryOmitsEmptyAndSplitsTime(t *testing.T) {
	t.Parallel()
	e := Entry{Time: time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)), Method: "GET", Status: 502,
		Duration: 30 * time.Millisecond, UpstreamDuration: 20 * time.Millisecond}
	line := e.appendJSON(nil)
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	if got["time"] != "2024-01-02T02:04:05.000000006Z" {
		t.Fatalf("time %v, want UTC RFC3339Nano", got["time"])
	}
	for _, k := range []string{"host", "route", "principal", "user_agent", "denied_by"} {
		if _, ok := got[k]; ok {
			t.Fatalf("empty %s not omitted: %s", k, line)
		}
	}
	if got["duration_ms"] != 30.0 || got["upstream_ms"] != 20.0 || got["gateway_ms"] != 10.0 {
		t.Fatalf("durations %s", line)
	}
}

func TestEntryFromPrincipal(t *testing.T) {
	t.Parallel()
	start := time.Now()
	ex := &policy.Exchange{Start: start, Principal: &policy.Principal{ID: "alice"}, DeniedBy: "auth", ErrorCode: "unauthorized"}
	r := httptest.NewRequest("POST", "http://api.example.com/a%2Fb?token=x", strings.NewReader("abc"))
	e := EntryFrom(ex, r, 401, 10, start.Add(time.Second))
	if e.Principal != "alice" || e.Host != "api.example.com" || e.Path != "/a/b" || e.BytesIn != 3 ||
		e.Duration != time.Second || e.DeniedBy != "auth" || e.ErrorCode != "unauthorized" {
		t.Fatalf("entry %+v", e)
	}
}

func TestRouteHandleCachedAndUnmatched(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	a1, a2, u1, u2 := m.Route("a"), m.Route("a"), m.Route(""), m.Route("")
	if a1 != a2 || u1 != u2 || a1 == u1 {
		t.Fatal("Route returned different handles for the same name")
	}
	m.Route("").Observe("GET", 404, time.Millisecond)
	m.Route("a").Observe("GET", 200, time.Millisecond)
	m.RetainRoutes(nil)
	if counter(t, m, "", "GET", "404") != 1 {
		t.Fatal("the unmatched handle's series were deleted")
	}
	if counter(t, m, "a", "GET", "200") != -1 {
		t.Fatal("route a survived RetainRoutes(nil)")
	}
	if m.Route("a").Observe("GET", 200, 0); counter(t, m, "a", "GET", "200") != 1 {
		t.Fatal("a route that came back does not count from zero")
	}
}

func TestTargetsDeniedReload(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	a, b := m.Target("u", "http://a"), m.Target("u", "http://b")
	if m.Target("u", "http://a") != a {
		t.Fatal("Target returned a new handle for the same pair")
	}
	a.Attempt()
	a.Error("connect")
	a.Error("connect")
	a.SetHealthy(true)
	b.Attempt()
	b.SetHealthy(false)
	if v := value(t, m, "limen_upstream_errors_total", map[string]string{"target": "http://a", "kind": "connect"}); v != 2 {
		t.Fatalf("errors = %v", v)
	}
	if v := value(t, m, "limen_upstream_target_healthy", map[string]string{"target": "http://a"}); v != 1 {
		t.Fatalf("healthy = %v", v)
	}
	m.RetainTargets(map[string][]string{"u": {"http://b"}})
	for _, name := range []string{"limen_upstream_attempts_total", "limen_upstream_errors_total", "limen_upstream_target_healthy"} {
		if v := value(t, m, name, map[string]string{"target": "http://a"}); v != -1 {
			t.Fatalf("%s of a removed target left: %v", name, v)
		}
	}
	if v := value(t, m, "limen_upstream_attempts_total", map[string]string{"target": "http://b"}); v != 1 {
		t.Fatalf("kept target lost its series: %v", v)
	}

	m.Denied("r", "auth-1", "unauthorized")
	if v := value(t, m, "limen_policy_denials_total", map[string]string{"route": "r", "policy": "auth-1", "code": "unauthorized"}); v != 1 {
		t.Fatalf("denials = %v", v)
	}
	m.Reload(true, "h1")
	m.Reload(false, "")
	m.Reload(true, "h2")
	if v := value(t, m, "limen_config_reloads_total", map[string]string{"result": "success"}); v != 2 {
		t.Fatalf("successes = %v", v)
	}
	if v := value(t, m, "limen_config_reloads_total", map[string]string{"result": "failure"}); v != 1 {
		t.Fatalf("failures = %v", v)
	}
	if value(t, m, "limen_config_info", map[string]string{"hash": "h1"}) != -1 || value(t, m, "limen_config_info", map[string]string{"hash": "h2"}) != 1 {
		t.Fatal("limen_config_info does not name only the current hash")
	}
	if value(t, m, "limen_config_last_reload_success_timestamp_seconds", nil) <= 0 {
		t.Fatal("no last success timestamp")
	}
}

func TestHandlerServesExposition(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Route("r").Observe("GET", 200, time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `limen_http_requests_total{code="200",method="GET",route="r"} 1`) ||
		!strings.Contains(body, "go_goroutines") {
		t.Fatalf("exposition %d:\n%s", rec.Code, body)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `"\\`, "\x00\x1f\x7f", "\xff", "é✓🎉", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendString(nil, s)
		var out string
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, b, err)
		}
		if want := perByteValid(s); out != want {
			t.Fatalf("round trip %q -> %q", s, out)
		}
	})
}

// perByteValid replaces each byte of an invalid UTF-8 sequence with U+FFFD, as the encoder does.
func perByteValid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // RuneError for a bad byte is U+FFFD
		i += n
	}
	return b.String()
}

func BenchmarkObserve(b *testing.B) {
	r := NewMetrics().Route("bench")
	r.Observe("GET", 200, time.Millisecond)
	b.ReportAllocs()
	for b.Loop() {
		r.Observe("GET", 200, time.Millisecond)
	}
}

func BenchmarkAccessLog(b *testing.B) {
	e := benchEntry()
	l := newAccessLog(io.Discard, nil, 4096)
	defer l.Close()
	b.ReportAllocs()
	for b.Loop() {
		l.Log(&e)
	}
}

func BenchmarkAccessLogEncode(b *testing.B) {
	e := benchEntry()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.appendJSON(buf[:0])
	}
}

func benchEntry() Entry {
	return Entry{Time: time.Now(), Method: "GET", Host: "api.example.com", Path: "/users/42", Proto: "HTTP/1.1", Route: "users",
		Upstream: "users", Target: "http://10.0.0.1:9000", Attempts: 1, Status: 200, BytesOut: 512, Duration: time.Millisecond,
		RequestID: "0123456789abcdef0123456789abcdef", ClientIP: "203.0.113.9", UserAgent: "curl/8"}
}

// value reads the first series of a family whose labels include want: counter, gauge or untyped
// value, -1 when absent.
func value(t *testing.T, m *Metrics, family string, want map[string]string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
	next:
		for _, metric := range f.GetMetric() {
			l := map[string]string{}
			for _, lp := range metric.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if l[k] != v {
					continue next
				}
			}
			switch {
			case metric.Counter != nil:
				return metric.GetCounter().GetValue()
			case metric.Gauge != nil:
				return metric.GetGauge().GetValue()
			default:
				return metric.GetUntyped().GetValue()
			}
		}
	}
	return -1
}

func gauge(t *testing.T, m *Metrics, family string) float64 { return value(t, m, family, nil) }

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

// Requests in flight on an old snapshot keep observing while a reload retains routes and the
// access log closes; neither may race or panic.
func TestConcurrentObserveRetainAndClose(t *testing.T) {
	m := NewMetrics()
	l := newAccessLog(io.Discard, nil, 8)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := Entry{Time: time.Now(), Method: "GET", Path: "/"}
			r := m.Route("r" + strconv.Itoa(i%2))
			for j := range 500 {
				r.Observe(methods[j%len(methods)], 100+j%500, time.Microsecond)
				l.Log(&e)
			}
		}()
	}
	for range 50 {
		m.RetainRoutes([]string{"r0"})
		m.Route("r1")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := m.Registry().Gather(); err != nil {
		t.Fatal(err)
	}
}
