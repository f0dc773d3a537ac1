// Package mirror provides the mirror policy (traffic shadowing, Envoy's request_mirror_policies,
// nginx's mirror): a sampled share of a route's requests is copied to another service, fire and
// forget. The copy is sent from its own goroutine after the real request went on; its answer is
// read and discarded, and neither its status, its errors nor its latency ever reach the client.
//
// A copy costs bounded resources: at most max_concurrency copies are in flight per instance (a
// sampled request that finds them all taken is dropped, never queued), each lives at most
// timeout, and only bodies of known length up to max_body are copied (they are buffered once
// and replayed for both the real upstream and the copy). The HTTP client is shared through the
// Pool, so reloads keep its connections; Close waits for the instance's copies in flight.
package mirror

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/limen-gateway/limen/internal/outbound"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "mirror"

// maxResponseBytes caps what is read of the shadow service's answer before it is dropped:
// reading a small answer to its end keeps the connection for the next copy, and a large one is
// not worth the bandwidth (closing the body closes that connection instead).
const maxResponseBytes = 64 << 10

// logEvery is the least time between two "copy failed" log lines of one instance: a shadow
// service that is down must not turn every mirrored request into a log line.
const logEvery = 10 * time.Second

// closedBit marks the in-flight counter of a closed instance: every later acquire sees a count
// above any max_concurrency and drops its copy.
const closedBit = int64(1) << 62

// phases: Cache by default, the innermost phase, so the copy is the request as it goes
// upstream, after authentication, limits and transforms; Edge at the earliest, to shadow
// traffic that later policies refuse too.
var phases = policy.PhaseRange{Default: policy.Cache, Min: policy.Edge, Max: policy.Cache}

func init() {
	policy.Register(Kind, phases, build)
}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	target, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err) // Validate parsed it already
	}
	ca := c.CA.Path(bc.BaseDir)
	timeout := c.Timeout.D()
	log := bc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &mirror{
		percent:     *c.Percent,
		timeout:     timeout,
		max:         int64(c.MaxConcurrency),
		maxBody:     int64(c.MaxBody),
		host:        target.Host,
		prefix:      target.Scheme + "://" + target.Host + strings.TrimSuffix(target.EscapedPath(), "/"),
		query:       target.RawQuery,
		url:         c.URL,
		log:         log,
		idle:        make(chan struct{}),
		releaseFunc: func() {},
	}
	for name, v := range c.Headers {
		if v == "" {
			m.remove = append(m.remove, name)
		} else {
			m.set = append(m.set, header{name, []string{v}})
		}
	}
	key := "mirror|" + c.URL + "|" + ca + "|" + timeout.String()
	obj, release, err := bc.Acquire(key, func() (any, error) { return outbound.Service(ca, timeout) })
	if err != nil {
		return nil, err
	}
	m.client, m.releaseFunc = obj.(*outbound.Closer), release
	return m, nil
}

var _ policy.Policy = (*mirror)(nil)

type mirror struct {
	percent float64
	timeout time.Duration
	max     int64
	maxBody int64
	host    string // the shadow service's host, the copies' Host
	prefix  string // scheme, host and base path without a trailing slash
	query   string // the base URL's own query, put before the request's
	url     string // as configured, for logs
	set     []header
	remove  []string

	client      *outbound.Closer
	releaseFunc func()
	log         *slog.Logger

	// inflight counts copies in flight, plus closedBit once Close began.
	inflight  atomic.Int64
	idle      chan struct{} // closed when the last copy of a closed instance finishes
	idleOnce  sync.Once
	closeOnce sync.Once

	mirrored, skipped, skippedBody, dropped, failed atomic.Int64

	lastLog    atomic.Int64 // unix nanoseconds of the last "copy failed" log line
	suppressed atomic.Int64 // failures not logged since
}

// header is one header set on every copy.
type header struct {
	name   string
	values []string
}

// Stats are an instance's counters since it was built.
type Stats struct {
	// Mirrored counts copies sent (each then either answered or failed).
	Mirrored int64
	// Skipped counts requests not copied by choice: not sampled, a body over max_body or of
	// unknown length (also counted in SkippedBody), or a protocol upgrade.
	Skipped int64
	// SkippedBody counts the requests of Skipped left out for their body: larger than
	// max_body, of unknown length, or failing to read from the client.
	SkippedBody int64
	// Dropped counts sampled requests not copied because max_concurrency copies were in
	// flight (or the instance was closed).
	Dropped int64
	// Failed counts copies without a usable answer: a network error, a timeout, or a 5xx.
	Failed int64
}

// Stats returns the instance's counters.
func (m *mirror) Stats() Stats {
	return Stats{
		Mirrored:    m.mirrored.Load(),
		Skipped:     m.skipped.Load(),
		SkippedBody: m.skippedBody.Load(),
		Dropped:     m.dropped.Load(),
		Failed:      m.failed.Load(),
	}
}

// Close stops new copies, waits for those in flight (each ends within timeout), and releases
// the shared HTTP client.
func (m *mirror) Close() error {
	m.closeOnce.Do(func() {
		if old := m.inflight.Or(closedBit); old != 0 {
			<-m.idle
		}
		m.releaseFunc()
	})
	return nil
}

// Wrap starts a copy of a sampled request and passes the request on without waiting for it.
func (m *mirror) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		m.start(r)
		return next.ServeHTTP(w, r)
	})
}

// start decides whether r is copied and, when it is, buffers its body and sends the copy from a
// new goroutine. Nothing here fails the real request.
func (m *mirror) start(r *http.Request) {
	// Independent sampling with math/rand/v2: unbiased whatever the request ids look like,
	// and free of shared state (its global source is per-thread).
	if m.percent < 100 && rand.Float64()*100 >= m.percent {
		m.skipped.Add(1)
		return
	}
	if r.Method == http.MethodConnect || r.Header.Get("Upgrade") != "" {
		// A tunnel or a WebSocket is a conversation, not a request a copy could replay.
		m.skipped.Add(1)
		return
	}
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody && (r.ContentLength < 0 || r.ContentLength > m.maxBody) {
		m.skip(true)
		return
	}
	if !m.acquire() {
		m.dropped.Add(1)
		return
	}
	var body []byte
	if hasBody {
		var ok bool
		if body, ok = buffer(r); !ok {
			m.done()
			m.skip(true)
			return
		}
	}
	// The copy must not end with the client's request; its own timeout bounds it instead.
	// It keeps the request's context values (trace context, for later tracing); nothing on
	// the copy's path reads the Exchange, which is recycled when the request ends.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), m.timeout)
	req, err := m.copyRequest(ctx, r, body)
	if err != nil {
		cancel()
		m.done()
		m.failed.Add(1)
		m.logFailure(err)
		return
	}
	m.mirrored.Add(1)
	go m.send(req, cancel)
}

func (m *mirror) skip(body bool) {
	m.skipped.Add(1)
	if body {
		m.skippedBody.Add(1)
	}
}

// acquire takes a slot for a copy; it fails when max_concurrency copies are in flight or the
// instance is closed. Lock-free: requests of every route using the instance share it.
func (m *mirror) acquire() bool {
	if m.inflight.Add(1) > m.max {
		m.done()
		return false
	}
	return true
}

// done gives a slot back and, on a closed instance, tells Close when the last one is back.
func (m *mirror) done() {
	if m.inflight.Add(-1) == closedBit {
		m.idleOnce.Do(func() { close(m.idle) })
	}
}

// buffer reads the request's body of known length and puts a replayable copy back for the
// real upstream. When the body cannot be read whole (the client went away, an earlier
// body_limit refused it), what was read is put back followed by the same error, so the
// upstream sees exactly what it would have without the mirror, and there is no copy.
func buffer(r *http.Request) ([]byte, bool) {
	orig := r.Body
	buf := make([]byte, r.ContentLength)
	n := 0
	var err error
	for n < len(buf) && err == nil {
		var k int
		k, err = orig.Read(buf[n:])
		n += k
	}
	if n < len(buf) {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf[:n]), errReader{err}), orig}
		return nil, false
	}
	// The original body follows the buffered bytes, so its own end (io.EOF, or an error)
	// still reaches the upstream.
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), orig), orig}
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	return buf, true
}

// errReader returns err on every read.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// hopByHop are the request headers that describe the client's connection or the message's own
// framing (RFC 9110 §7.6.1, RFC 9112 §6), never copied.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Expect",
}

// copyRequest builds the copy of r: its method, path and query under the shadow service's base
// URL, its headers minus hop-by-hop ones, Host rewritten to the shadow service's with the
// original kept in X-Forwarded-Host, and the configured headers.
func (m *mirror) copyRequest(ctx context.Context, r *http.Request, body []byte) (*http.Request, error) {
	path := r.URL.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path // "OPTIONS *" and the like
	}
	target := m.prefix + path
	switch q := r.URL.RawQuery; {
	case m.query != "" && q != "":
		target += "?" + m.query + "&" + q
	case m.query != "":
		target += "?" + m.query
	case q != "":
		target += "?" + q
	}
	var rb io.Reader
	if body != nil {
		rb = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, target, rb)
	if err != nil {
		return nil, fmt.Errorf("building the copy of %s %s: %w", r.Method, path, err)
	}
	req.Host = m.host

	h := r.Header.Clone() // the real request goes on and may be changed by later handlers
	if h == nil {
		h = http.Header{}
	}
	for _, v := range r.Header["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		delete(h, name)
	}
	// A trusted proxy's forwarding headers survived the server's hygiene and are kept; a
	// client's own did not. What is missing is filled in as the proxy would.
	if _, ok := h["X-Forwarded-Host"]; !ok {
		h["X-Forwarded-Host"] = []string{r.Host}
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		proto := "http"
		if r.TLS != nil {
			proto = "https"
		}
		h["X-Forwarded-Proto"] = []string{proto}
	}
	if _, ok := h["X-Forwarded-For"]; !ok {
		if ip := policy.ClientIPFrom(r.Context()); ip.IsValid() {
			h["X-Forwarded-For"] = []string{ip.String()}
		} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			h["X-Forwarded-For"] = []string{host}
		}
	}
	if id := policy.RequestIDFrom(r.Context()); id != "" {
		h["X-Request-Id"] = []string{id} // so the shadow's logs can be matched with the real ones
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // as the client sent it: none, not Go's
	}
	for _, s := range m.set {
		h[s.name] = s.values
	}
	for _, name := range m.remove {
		delete(h, name)
	}
	req.Header = h
	return req, nil
}

// send sends one copy and reads its answer to the end (up to maxResponseBytes), counting
// failures. It runs in its own goroutine and gives its slot back when done.
func (m *mirror) send(req *http.Request, cancel context.CancelFunc) {
	defer m.done()
	defer cancel()
	resp, err := m.client.Do(req)
	if err != nil {
		m.failed.Add(1)
		m.logFailure(err)
		return
	}
	_, err = io.CopyN(io.Discard, resp.Body, maxResponseBytes)
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		m.failed.Add(1)
		m.logFailure(fmt.Errorf("the shadow service answered status %d", resp.StatusCode))
	case err != nil && err != io.EOF:
		m.failed.Add(1)
		m.logFailure(fmt.Errorf("reading the shadow service's answer: %w", err))
	}
}

// logFailure logs a failed copy at most once per logEvery, with how many were not logged since.
func (m *mirror) logFailure(err error) {
	now := time.Now().UnixNano()
	last := m.lastLog.Load()
	if now-last < int64(logEvery) || !m.lastLog.CompareAndSwap(last, now) {
		m.suppressed.Add(1)
		return
	}
	m.log.Warn("mirror copy failed; the real requests are not affected", "url", m.url, "err", err,
		"suppressed", m.suppressed.Swap(0))
}
