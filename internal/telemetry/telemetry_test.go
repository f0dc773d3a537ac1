package telemetry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/limen-gateway/limen/policy"
)

// The access log starts a goroutine; every test must leave none behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// exercise touches every Limen metric so each family has at least one series.
func exercise(m *Metrics) {
	m.Route("r").Observe("GET", 200, time.Millisecond)
	m.Denied("r", "auth", "unauthorized")
	t := m.Target("u", "http://127.0.0.1:1")
	t.Attempt()
	t.Error("connect")
	t.SetHealthy(true)
	t.SetInFlightFunc(func() int64 { return 3 })
	m.Reload(true, "abc")
}

// TestMetricConventions enforces the naming rules: every family of ours starts with limen_, has
// help text, and carries exactly the documented bounded labels.
func TestMetricConventions(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	exercise(m)
	want := map[string][]string{
		"limen_http_requests_total":                          {"code", "method", "route"},
		"limen_http_request_duration_seconds":                {"route"},
		"limen_upstream_attempts_total":                      {"target", "upstream"},
		"limen_upstream_errors_total":                        {"kind", "target", "upstream"},
		"limen_upstream_target_healthy":                      {"target", "upstream"},
		"limen_upstream_in_flight":                           {"target", "upstream"},
		"limen_policy_denials_total":                         {"code", "policy", "route"},
		"limen_config_reloads_total":                         {"result"},
		"limen_config_last_reload_success_timestamp_seconds": nil,
		"limen_config_info":                                  {"hash"},
		"limen_access_log_dropped_total":                     nil,
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range families {
		name := f.GetName()
		if f.GetHelp() == "" {
			t.Errorf("metric %s has no help", name)
		}
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue // the standard collectors
		}
		labels, ok := want[name]
		if !ok {
			t.Errorf("metric %s is not limen_-prefixed or not in the documented set", name)
			continue
		}
		seen[name] = true
		for _, metric := range f.GetMetric() {
			var got []string
			for _, l := range metric.GetLabel() {
				got = append(got, l.GetName())
			}
			sort.Strings(got)
			if strings.Join(got, ",") != strings.Join(labels, ",") {
				t.Errorf("metric %s has labels %v, want %v", name, got, labels)
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("metric %s is not exported", name)
		}
	}
	if !seen["limen_http_requests_total"] || value(t, m, "go_goroutines", nil) <= 0 {
		t.Error("Go collector missing")
	}
}

func TestObserveLabels(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method string
		status       int
		wantMethod   string
		wantCode     string
	}{
		{"known method", "GET", 200, "GET", "200"},
		{"every class", "POST", 503, "POST", "503"},
		{"informational", "GET", 101, "GET", "101"},
		{"unknown method", "BREW", 418, "OTHER", "418"},
		{"lowercase is not GET", "get", 200, "OTHER", "200"},
		{"status zero", "GET", 0, "GET", "other"},
		{"status too large", "GET", 1000, "GET", "other"},
		{"negative status", "GET", -1, "GET", "other"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			m := NewMetrics()
			r := m.Route("users")
			r.Observe(c.method, c.status, time.Millisecond)
			r.Observe(c.method, c.status, time.Millisecond) // the cached path
			if got := value(t, m, "limen_http_requests_total", map[string]string{"route": "users", "method": c.wantMethod, "code": c.wantCode}); got != 2 {
				t.Fatalf("requests{%s,%s} = %v, want 2", c.wantMethod, c.wantCode, got)
			}
			if got := histCount(t, m, "users"); got != 2 {
				t.Fatalf("duration count = %v", got)
			}
		})
	}
}

func TestRouteCreatesNoSeriesUntilUsed(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Route("dry-run")
	if v := value(t, m, "limen_http_request_duration_seconds", map[string]string{"route": "dry-run"}); v != -1 {
		t.Fatal("Route alone created series (a dry run would export them)")
	}
}

func TestRetainRoutes(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	users, orders := m.Route("users"), m.Route("orders")
	users.Observe("GET", 200, time.Millisecond)
	users.Denied("auth", "unauthorized")
	orders.Observe("GET", 200, time.Millisecond)
	m.Route("").Observe("GET", 404, time.Millisecond)

	m.RetainRoutes([]string{"orders"})
	for _, fam := range []string{"limen_http_requests_total", "limen_http_request_duration_seconds", "limen_policy_denials_total"} {
		if v := value(t, m, fam, map[string]string{"route": "users"}); v != -1 {
			t.Fatalf("%s of a removed route left", fam)
		}
	}
	if value(t, m, "limen_http_requests_total", map[string]string{"route": "orders"}) != 1 {
		t.Fatal("a kept route lost its series")
	}
	if value(t, m, "limen_http_requests_total", map[string]string{"route": ""}) != 1 {
		t.Fatal("unmatched requests' series deleted")
	}

	// A request finishing on the old snapshot must not bring the series back, on a cached code,
	// a new code or a denial.
	users.Observe("GET", 200, time.Millisecond)
	users.Observe("DELETE", 500, time.Millisecond)
	users.Denied("auth", "forbidden")
	m.Denied("users", "auth", "unauthorized")
	if v := value(t, m, "limen_http_requests_total", map[string]string{"route": "users"}); v != -1 {
		t.Fatal("an invalidated handle recreated series")
	}
	if v := value(t, m, "limen_policy_denials_total", map[string]string{"route": "users"}); v != -1 {
		t.Fatal("a denial on a removed route recreated series")
	}
	// A route that comes back gets a new handle and counts from zero.
	back := m.Route("users")
	if back == users {
		t.Fatal("Route returned the invalidated handle")
	}
	back.Observe("GET", 200, 0)
	if value(t, m, "limen_http_requests_total", map[string]string{"route": "users", "code": "200"}) != 1 {
		t.Fatal("a returning route does not count from zero")
	}
}

func TestRouteHandleIdentity(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	a1, a2, u1, u2 := m.Route("a"), m.Route("a"), m.Route(""), m.Route("")
	if a1 != a2 || u1 != u2 || a1 == u1 {
		t.Fatal("Route does not return one handle per name")
	}
	var nilHandle *RouteMetrics
	nilHandle.Observe("GET", 200, 0) // a route built without metrics
	nilHandle.Denied("p", "c")
}

func TestTargets(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	a, b := m.Target("u", "http://a"), m.Target("u", "http://b")
	if m.Target("u", "http://a") != a {
		t.Fatal("Target returned a new handle for the same pair")
	}
	a.Attempt()
	a.Attempt()
	a.Error("connect")
	a.Error("connect")
	a.Error("weird") // folded into other
	a.SetHealthy(true)
	b.Attempt()
	b.SetHealthFunc(func() bool { return false })
	b.SetInFlightFunc(func() int64 { return 7 })

	checks := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"limen_upstream_attempts_total", map[string]string{"target": "http://a"}, 2},
		{"limen_upstream_errors_total", map[string]string{"target": "http://a", "kind": "connect"}, 2},
		{"limen_upstream_errors_total", map[string]string{"target": "http://a", "kind": "other"}, 1},
		{"limen_upstream_errors_total", map[string]string{"kind": "weird"}, -1},
		{"limen_upstream_target_healthy", map[string]string{"target": "http://a"}, 1},
		{"limen_upstream_target_healthy", map[string]string{"target": "http://b"}, 0},
		{"limen_upstream_in_flight", map[string]string{"target": "http://b"}, 7},
		{"limen_upstream_in_flight", map[string]string{"target": "http://a"}, -1}, // no source for it
	}
	for _, c := range checks {
		if v := value(t, m, c.family, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.family, c.labels, v, c.want)
		}
	}

	m.RetainTargets(map[string][]string{"u": {"http://b"}})
	for _, fam := range []string{"limen_upstream_attempts_total", "limen_upstream_errors_total", "limen_upstream_target_healthy", "limen_upstream_in_flight"} {
		if v := value(t, m, fam, map[string]string{"target": "http://a"}); v != -1 {
			t.Errorf("%s of a removed target left: %v", fam, v)
		}
	}
	a.Attempt() // an attempt finishing after the reload
	a.Error("timeout")
	if v := value(t, m, "limen_upstream_attempts_total", map[string]string{"target": "http://a"}); v != -1 {
		t.Error("an invalidated target handle recreated series")
	}
	if v := value(t, m, "limen_upstream_attempts_total", map[string]string{"target": "http://b"}); v != 1 {
		t.Errorf("kept target lost its series: %v", v)
	}
}

func TestTargetSource(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Target("u", "http://a").SetHealthy(false)
	m.SetTargetSource(func(yield func(TargetState)) {
		yield(TargetState{Upstream: "u", Target: "http://a", Healthy: true, InFlight: 2})
		yield(TargetState{Upstream: "u", Target: "http://a", Healthy: false, InFlight: 9}) // duplicate: ignored
		yield(TargetState{Upstream: "v", Target: "http://c", Healthy: false, InFlight: 0})
	})
	if v := value(t, m, "limen_upstream_target_healthy", map[string]string{"target": "http://a"}); v != 1 {
		t.Fatalf("the source does not take precedence: %v", v)
	}
	if v := value(t, m, "limen_upstream_in_flight", map[string]string{"upstream": "v", "target": "http://c"}); v != 0 {
		t.Fatalf("in flight from source: %v", v)
	}
	m.SetTargetSource(nil)
	if v := value(t, m, "limen_upstream_target_healthy", map[string]string{"target": "http://a"}); v != 0 {
		t.Fatalf("the handle's value after the source went: %v", v)
	}
}

func TestDeniedAndReload(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Route("r")
	m.Denied("r", "auth-1", "unauthorized")
	m.Denied("r", "auth-1", "unauthorized")
	m.Denied("", "ipfilter", "ip_denied")
	m.Denied("never-built", "x", "y")
	if v := value(t, m, "limen_policy_denials_total", map[string]string{"route": "r", "policy": "auth-1", "code": "unauthorized"}); v != 2 {
		t.Fatalf("denials = %v", v)
	}
	if v := value(t, m, "limen_policy_denials_total", map[string]string{"route": "", "policy": "ipfilter"}); v != 1 {
		t.Fatalf("unmatched denials = %v", v)
	}
	if v := value(t, m, "limen_policy_denials_total", map[string]string{"route": "never-built"}); v != -1 {
		t.Fatal("a denial on an unknown route created a series")
	}

	if value(t, m, "limen_config_reloads_total", map[string]string{"result": "failure"}) != 0 {
		t.Fatal("reload results not pre-created at zero")
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
	if v := value(t, m, "limen_config_last_reload_success_timestamp_seconds", nil); v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Fatalf("last success timestamp %v", v)
	}
}

func TestHandlerServesExposition(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.Route("r").Observe("GET", 200, time.Millisecond)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`limen_http_requests_total{code="200",method="GET",route="r"} 1`, "go_goroutines", "process_"} {
		if rec.Code != 200 || !strings.Contains(body, want) {
			t.Fatalf("exposition %d lacks %q:\n%s", rec.Code, want, body)
		}
	}
}

func TestAccessLogFileWithoutQuery(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "access.log")
	if err := os.WriteFile(path, []byte("existing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
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
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	l.Log(&e) // after Close: dropped, never a panic
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 2 || lines[0] != "existing" {
		t.Fatalf("file not appended to: %q", data)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &got); err != nil {
		t.Fatalf("invalid JSON %q: %v", lines[1], err)
	}
	if got["path"] != "/users/1" || got["request_id"] != "id\"1" || got["client_ip"] != "192.0.2.1" || got["status"] != float64(200) {
		t.Fatalf("entry %v", got)
	}
	if strings.Contains(lines[1], "secret") {
		t.Fatal("the query string reached the access log")
	}
}

func TestAccessLogOutputs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		output  string
		wantErr bool
	}{
		{"off", false}, {"stdout", false}, {"stderr", false}, {"", false},
		{filepath.Join(t.TempDir(), "missing-dir", "x", "access.log"), true},
	}
	for _, c := range cases {
		t.Run(c.output, func(t *testing.T) {
			t.Parallel()
			l, err := NewAccessLog(c.output, 1)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil {
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	var nilLog *AccessLog
	nilLog.Log(&Entry{})
	if err := nilLog.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAccessLogBatchesWholeLines writes many lines through one log and checks each is whole,
// valid JSON, in order: batching must never split or reorder lines.
func TestAccessLogBatchesWholeLines(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	l := newAccessLog(&buf, nil, 100000)
	const n = 5000
	for i := range n {
		e := Entry{Time: time.Now(), Method: "GET", Path: "/" + strconv.Itoa(i), UserAgent: strings.Repeat("u", i%700)}
		l.Log(&e)
	}
	// One line larger than a whole batch.
	huge := Entry{Method: "GET", Path: "/huge", UserAgent: strings.Repeat("h", flushSize+10)}
	l.Log(&huge)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
	sc.Buffer(nil, 4*flushSize)
	i := 0
	for sc.Scan() {
		var got struct{ Path string }
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("line %d invalid: %v", i, err)
		}
		want := "/" + strconv.Itoa(i)
		if i == n {
			want = "/huge"
		}
		if got.Path != want {
			t.Fatalf("line %d has path %q, want %q", i, got.Path, want)
		}
		i++
	}
	if i != n+1 {
		t.Fatalf("%d lines written, want %d", i, n+1)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Bytes()
}

func TestAccessLogDropsWhenFull(t *testing.T) {
	// Not parallel: it reads the process-wide drop counter.
	// A pipe nobody reads: the writer goroutine blocks on its first write, like a stuck disk.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	l := newAccessLog(pw, pw, 2)
	before := Dropped()
	e := Entry{Time: time.Now(), Method: "GET", Path: "/", UserAgent: strings.Repeat("x", 12<<10)}
	done := make(chan struct{})
	go func() {
		for range 200 {
			l.Log(&e)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a stuck writer")
	}
	// What is not dropped is bounded by the queue (2), one 64 KiB batch and the pipe's
	// buffer (64 KiB on Linux): about a dozen 12 KiB lines, however fast the writer runs.
	if n := Dropped() - before; n < 150 {
		t.Fatalf("dropped %d, want most of 200", n)
	}
	m := NewMetrics()
	if v := value(t, m, "limen_access_log_dropped_total", nil); v < 150 {
		t.Fatalf("limen_access_log_dropped_total = %v", v)
	}
	// Unblock the writer: the reading end goes, writes fail (and count), Close returns.
	pr.Close()
	_ = l.Close()
}

func TestAccessLogEscaping(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"quote":        `a"b`,
		"backslash":    `a\b`,
		"control":      "a\x00\n\r\t\x1fb",
		"forged line":  "ok\n{\"status\":200}",
		"invalid":      "a\xff\xfeb",
		"truncated":    "\xe2\x9c",
		"surrogate":    "\xed\xa0\x80",
		"unicode":      "héllo ✓ 🎉",
		"html":         "<script>&",
		"line sep":     "a\u2028b",
		"empty string": "",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := appendString(nil, in)
			if bytes.ContainsAny(b, "\n\r") {
				t.Fatalf("raw line break in %s", b)
			}
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

func TestEntryJSON(t *testing.T) {
	t.Parallel()
	e := Entry{Time: time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)), Method: "GET", Status: 502,
		Path: "/a?token=x", Duration: 30 * time.Millisecond, UpstreamDuration: 20 * time.Millisecond, Attempts: 2,
		ClientIP: netip.MustParseAddr("2001:db8::1")}
	line := e.AppendJSON(nil)
	if !bytes.HasSuffix(line, []byte("}\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("not one line: %q", line)
	}
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
	if got["path"] != "/a" {
		t.Fatalf("path %v: the query must never be logged", got["path"])
	}
	if got["duration_ms"] != 30.0 || got["upstream_ms"] != 20.0 || got["gateway_ms"] != 10.0 || got["attempts"] != 2.0 {
		t.Fatalf("durations %s", line)
	}
	if got["client_ip"] != "2001:db8::1" {
		t.Fatalf("client ip %v", got["client_ip"])
	}
	// Upstream time beyond the total (clock skew between two readings) never goes negative.
	e.UpstreamDuration = 40 * time.Millisecond
	if err := json.Unmarshal(e.AppendJSON(nil), &got); err != nil || got["gateway_ms"] != 0.0 {
		t.Fatalf("gateway_ms %v", got["gateway_ms"])
	}
}

func TestEntryFrom(t *testing.T) {
	t.Parallel()
	start := time.Now()
	ex := &policy.Exchange{Start: start, Principal: &policy.Principal{ID: "alice"}, DeniedBy: "auth", ErrorCode: "unauthorized",
		Route: "r", Upstream: "u", Target: "http://t", Attempts: 2, UpstreamTime: 300 * time.Millisecond}
	r := httptest.NewRequest("POST", "http://api.example.com/a%2Fb?token=x", strings.NewReader("abc"))
	r.Header.Set("User-Agent", "curl/8")
	e := EntryFrom(ex, r, 401, 10, start.Add(time.Second))
	want := Entry{Time: start.Add(time.Second), Method: "POST", Host: "api.example.com", Path: "/a%2Fb", Proto: "HTTP/1.1",
		Route: "r", Upstream: "u", Target: "http://t", Attempts: 2, Status: 401, BytesIn: 3, BytesOut: 10,
		Duration: time.Second, UpstreamDuration: 300 * time.Millisecond, Principal: "alice", DeniedBy: "auth",
		ErrorCode: "unauthorized", UserAgent: "curl/8"}
	if e != want {
		t.Fatalf("entry\n%+v\nwant\n%+v", e, want)
	}
	// Counted bytes win over the declared length; no Exchange still gives a line.
	ex.BytesIn = 2
	if e := EntryFrom(ex, r, 200, 0, start); e.BytesIn != 2 {
		t.Fatalf("bytes in %d", e.BytesIn)
	}
	if e := EntryFrom(nil, r, 200, 0, start); e.Duration != 0 || e.Path != "/a%2Fb" {
		t.Fatalf("nil exchange: %+v", e)
	}
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, level := NewLogger("warn", &buf)
	log.Info("hidden")
	log.Warn("shown", "k", "v")
	level.Set(slog.LevelDebug)
	log.Debug("now shown")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil || got["msg"] != "shown" || got["k"] != "v" {
		t.Fatalf("not a JSON line: %s", lines[0])
	}
	for _, c := range []struct {
		in string
		ok bool
	}{{"debug", true}, {"INFO", true}, {"", true}, {"warning", true}, {"error", true}, {"loud", false}} {
		if _, err := ParseLevel(c.in); (err == nil) != c.ok {
			t.Errorf("ParseLevel(%q) = %v", c.in, err)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", `"\\`, "\x00\x1f\x7f", "\xff", "é✓🎉", "\xed\xa0\x80", "a\nb"} {
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

// FuzzEntryJSON feeds client-controlled fields through the whole line encoder: the result is
// always one valid JSON line, and the path never carries a query.
func FuzzEntryJSON(f *testing.F) {
	f.Add("GET", "example.com", "/a?b=c", "curl/8", "id")
	f.Add("\x00", "\xff\n", "?", "\"}{", "\u2028")
	f.Fuzz(func(t *testing.T, method, host, path, ua, id string) {
		e := Entry{Method: method, Host: host, Path: path, UserAgent: ua, RequestID: id, Status: 200}
		line := e.AppendJSON(nil)
		if bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("not exactly one line: %q", line)
		}
		var got map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", line, err)
		}
		if p, _ := got["path"].(string); strings.Contains(p, "?") {
			t.Fatalf("path %q carries a query", p)
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

func BenchmarkObserveParallel(b *testing.B) {
	r := NewMetrics().Route("bench")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Observe(methods[i%3], 200+i%5, time.Millisecond)
			i++
		}
	})
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
		buf = e.AppendJSON(buf[:0])
	}
}

func BenchmarkEntryFrom(b *testing.B) {
	ex := &policy.Exchange{Route: "users", Start: time.Now(), ClientIP: netip.MustParseAddr("203.0.113.9"), RequestID: "0123456789abcdef"}
	r := httptest.NewRequest("GET", "http://api.example.com/users/42?x=1", nil)
	r.Header.Set("User-Agent", "curl/8")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		e := EntryFrom(ex, r, 200, 512, now)
		_ = e
	}
}

func benchEntry() Entry {
	return Entry{Time: time.Now(), Method: "GET", Host: "api.example.com", Path: "/users/42", Proto: "HTTP/1.1", Route: "users",
		Upstream: "users", Target: "http://10.0.0.1:9000", Attempts: 1, Status: 200, BytesOut: 512, Duration: time.Millisecond,
		RequestID: "0123456789abcdef0123456789abcdef", ClientIP: netip.MustParseAddr("203.0.113.9"), UserAgent: "curl/8"}
}

// value reads the first series of a family whose labels include want (counter, gauge or
// untyped value; a histogram's sample count), -1 when there is none.
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
			case metric.Histogram != nil:
				return float64(metric.GetHistogram().GetSampleCount())
			default:
				return metric.GetUntyped().GetValue()
			}
		}
	}
	return -1
}

func histCount(t *testing.T, m *Metrics, route string) float64 {
	return value(t, m, "limen_http_request_duration_seconds", map[string]string{"route": route})
}

// Requests in flight on an old snapshot keep observing and denying while reloads retain routes
// and targets and the access log closes; nothing may race, panic or leave a deleted series.
func TestConcurrentObserveRetainAndClose(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	l := newAccessLog(io.Discard, nil, 8)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := Entry{Time: time.Now(), Method: "GET", Path: "/"}
			r := m.Route("r" + strconv.Itoa(i%2))
			tg := m.Target("u", "t"+strconv.Itoa(i%2))
			for j := range 500 {
				r.Observe(methods[j%len(methods)], 100+j%500, time.Microsecond)
				r.Denied("p", "c")
				tg.Attempt()
				tg.Error(errorKinds[j%len(errorKinds)])
				l.Log(&e)
			}
		}()
	}
	for range 50 {
		m.RetainRoutes([]string{"r0"})
		m.RetainTargets(map[string][]string{"u": {"t0"}})
		m.Route("r1")
		if _, err := m.Registry().Gather(); err != nil {
			t.Error(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	m.RetainRoutes([]string{"r0"})
	m.RetainTargets(map[string][]string{"u": {"t0"}})
	if v := value(t, m, "limen_http_requests_total", map[string]string{"route": "r1"}); v != -1 {
		t.Fatal("series of a removed route survived")
	}
	if v := value(t, m, "limen_upstream_attempts_total", map[string]string{"target": "t1"}); v != -1 {
		t.Fatal("series of a removed target survived")
	}
}

// BenchmarkRetainRoutes10k is a reload that drops 10,000 routes which each served requests.
func BenchmarkRetainRoutes10k(b *testing.B) {
	names := make([]string, 10000)
	for i := range names {
		names[i] = "route-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		m := NewMetrics()
		for _, n := range names {
			m.Route(n).Observe("GET", 200, time.Millisecond)
		}
		b.StartTimer()
		m.RetainRoutes(nil)
	}
}

// BenchmarkAccessLogServing logs from a single P that yields between lines, as a proxy's
// goroutines do at every network wait: the writer's own scheduling is part of the cost.
func BenchmarkAccessLogServing(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	e := benchEntry()
	l := newAccessLog(io.Discard, nil, 1<<16)
	defer l.Close()
	b.ReportAllocs()
	for b.Loop() {
		l.Log(&e)
		runtime.Gosched()
	}
}

// TestAccessLogSmallBufferKeepsUp: with a line limit far below one 64 KiB batch, the writer
// flushes at half the limit instead of waiting out its 100 ms delay, so a steady trickle into a
// fast output keeps up (waiting for the delay, most of these lines were dropped).
func TestAccessLogSmallBufferKeepsUp(t *testing.T) {
	// Not parallel: it reads the process-wide drop counter.
	var buf syncBuffer
	l := newAccessLog(&buf, nil, 40)
	before := Dropped()
	e := benchEntry()
	const logged = 300
	for range logged {
		l.Log(&e)
		time.Sleep(time.Millisecond)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	dropped := int(Dropped() - before)
	// A writer starved for 20 ms on a loaded machine may lose a few; the old wake-up lost most.
	if dropped > logged/20 {
		t.Errorf("%d of %d lines dropped with a buffer of 40", dropped, logged)
	}
	if got := bytes.Count(buf.Bytes(), []byte("\n")); got+dropped != logged {
		t.Errorf("%d lines written and %d dropped, want %d in all", got, dropped, logged)
	}
}

// TestFlushAccessLogs: a log nobody closes (a retired snapshot still draining at exit) has its
// waiting lines written by FlushAccessLogs, well before its own delay.
func TestFlushAccessLogs(t *testing.T) {
	var buf syncBuffer
	l := newAccessLog(&buf, nil, 4096)
	defer l.Close()
	e := benchEntry()
	l.Log(&e)
	l.Log(&e)
	FlushAccessLogs()
	if got := bytes.Count(buf.Bytes(), []byte("\n")); got != 2 {
		t.Fatalf("%d lines written after FlushAccessLogs, want 2", got)
	}
}
