package telemetry

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/limen-gateway/limen/policy"
)

// Entry is one access log line.
type Entry struct {
	Time time.Time
	// Method is the request method as the client sent it (escaped, never trusted).
	Method string
	Host   string
	// Path is the request path without the query, which may carry credentials. AppendJSON cuts
	// anything from a '?' on, whoever filled the entry.
	Path  string
	Proto string
	// Route is the matched route; Upstream and Target name the last attempt's pool and target.
	Route, Upstream, Target string
	Attempts                int
	Status                  int
	BytesIn, BytesOut       int64
	// Duration is the whole request; UpstreamDuration the time spent waiting for the upstream.
	// The line also carries their difference, the time spent in the gateway.
	Duration, UpstreamDuration time.Duration
	RequestID                  string
	// ClientIP is an address, not a string, so building an entry allocates nothing.
	ClientIP netip.Addr
	// Principal is the authenticated caller's id, when one is known.
	Principal string
	// DeniedBy and ErrorCode name the policy and code that refused the request, when one did.
	DeniedBy, ErrorCode string
	UserAgent           string
}

// EntryFrom builds the entry for a finished request from its Exchange (nil is allowed). The path
// is the escaped form the router matched, never with the query. BytesIn is the body bytes the
// server counted, or the declared Content-Length when nothing counted them.
func EntryFrom(ex *policy.Exchange, r *http.Request, status int, bytesOut int64, now time.Time) Entry {
	if ex == nil {
		ex = &policy.Exchange{}
	}
	e := Entry{
		Time: now, Method: r.Method, Host: r.Host, Path: escapedPath(r), Proto: r.Proto,
		Route: ex.Route, Upstream: ex.Upstream, Target: ex.Target, Attempts: ex.Attempts,
		Status: status, BytesIn: ex.BytesIn, BytesOut: bytesOut, UpstreamDuration: ex.UpstreamTime,
		RequestID: ex.RequestID, ClientIP: ex.ClientIP, DeniedBy: ex.DeniedBy, ErrorCode: ex.ErrorCode,
		UserAgent: r.UserAgent(),
	}
	if e.BytesIn == 0 && r.ContentLength > 0 {
		e.BytesIn = r.ContentLength
	}
	if !ex.Start.IsZero() {
		e.Duration = now.Sub(ex.Start)
	}
	if ex.Principal != nil {
		e.Principal = ex.Principal.ID
	}
	return e
}

// escapedPath returns the path the router matched: the server stores its normalized escaped
// form in RawPath; otherwise EscapedPath re-escapes Path, allocating only when it must.
func escapedPath(r *http.Request) string {
	if r.URL == nil {
		return ""
	}
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	return r.URL.EscapedPath()
}

// AccessLog writes entries as JSON lines from one goroutine. Log encodes a line on its own stack
// and appends it to a shared batch under a mutex; the writer wakes when a batch starts, lets it
// gather for flushDelay (or until it holds flushSize bytes or half the line limit) and writes it
// with one syscall. A busy gateway therefore pays neither a goroutine wake-up nor a syscall per
// line. When the writer falls behind, lines beyond the limit are dropped and counted
// (limen_access_log_dropped_total): a slow disk or a blocked stdout never slows requests.
type AccessLog struct {
	w      io.Writer
	closer io.Closer
	limit  int64 // lines that may wait for the writer
	soon   int64 // lines at which the writer flushes without waiting: half the limit

	mu      sync.Mutex
	pending []byte       // whole lines waiting for the writer
	lines   atomic.Int64 // lines in pending; written under mu, read without it to drop early

	// wmu orders writes: the writer's and FlushAccessLogs' batches reach the output whole and
	// in order. spare, the previous batch kept for reuse, is only touched under it.
	wmu   sync.Mutex
	spare []byte

	wake     chan struct{} // capacity 1: a batch started, or reached flushSize or half the limit
	stop     chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	once     sync.Once
	closeErr error
	disabled bool
}

const (
	// flushSize is the batch size that is written at once, without waiting out flushDelay.
	flushSize = 64 << 10
	// flushDelay bounds how long a line waits before it is written, like nginx's
	// access_log flush=: long enough to batch a busy second, short enough for tail -f.
	flushDelay = 100 * time.Millisecond
	// maxRetained is the batch capacity kept for reuse; a burst's larger batch is released.
	maxRetained = 1 << 20
	// maxPending bounds the bytes waiting, whatever the line limit, so huge lines behind a
	// blocked output cannot pile up.
	maxPending = 8 << 20
)

// openLogs are the logs not yet closed, for FlushAccessLogs.
var openLogs = struct {
	sync.Mutex
	m map[*AccessLog]struct{}
}{m: map[*AccessLog]struct{}{}}

// FlushAccessLogs writes what every open access log holds. The process calls it on its way out:
// a log still held by a snapshot that was draining when shutdown ended is never closed, and its
// last lines would otherwise be lost.
func FlushAccessLogs() {
	openLogs.Lock()
	logs := make([]*AccessLog, 0, len(openLogs.m))
	for l := range openLogs.m {
		logs = append(logs, l)
	}
	openLogs.Unlock()
	for _, l := range logs {
		l.flush()
	}
}

// NewAccessLog opens output and starts the writer: stdout (also ""), stderr, off (a log that
// discards without a goroutine) or a file path, created if missing and appended to. buffer is the
// number of lines that may wait for the writer (4096 when <= 0).
func NewAccessLog(output string, buffer int) (*AccessLog, error) {
	switch output {
	case "off":
		return &AccessLog{disabled: true}, nil
	case "", "stdout":
		return newAccessLog(os.Stdout, nil, buffer), nil
	case "stderr":
		return newAccessLog(os.Stderr, nil, buffer), nil
	}
	f, err := os.OpenFile(output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open access log: %w", err)
	}
	return newAccessLog(f, f, buffer), nil
}

func newAccessLog(w io.Writer, c io.Closer, buffer int) *AccessLog {
	if buffer <= 0 {
		buffer = 4096
	}
	l := &AccessLog{w: w, closer: c, limit: int64(buffer), soon: max(int64(buffer)/2, 1),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	openLogs.Lock()
	openLogs.m[l] = struct{}{}
	openLogs.Unlock()
	go l.run()
	return l
}

func (l *AccessLog) run() {
	defer close(l.done)
	delay := time.NewTimer(flushDelay)
	delay.Stop()
	for {
		select {
		case <-l.wake:
		case <-l.stop:
			l.flush()
			return
		}
		l.mu.Lock()
		full := len(l.pending) >= flushSize || l.lines.Load() >= l.soon
		l.mu.Unlock()
		if !full {
			delay.Reset(flushDelay)
			select {
			case <-delay.C:
			case <-l.wake: // the batch reached flushSize or half the limit
				delay.Stop()
			case <-l.stop:
				l.flush()
				return
			}
		}
		l.flush()
	}
}

// flush writes the pending batch, outside mu so Log never waits on the output.
func (l *AccessLog) flush() {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	batch, n := l.pending, l.lines.Load()
	l.pending = l.spare[:0]
	l.lines.Store(0)
	l.mu.Unlock()
	if len(batch) > 0 {
		if _, err := l.w.Write(batch); err != nil {
			// Nobody to report a per-line failure to: count the lost lines like dropped ones.
			droppedLines.Add(uint64(n))
		}
	}
	if cap(batch) > maxRetained {
		batch = nil
	}
	l.spare = batch[:0]
}

// Log queues one entry, or drops and counts it when the writer is behind or the log closed. It
// never blocks on the output. A nil or "off" log discards.
func (l *AccessLog) Log(e *Entry) {
	if l == nil || l.disabled {
		return
	}
	// Checking before encoding saves the work when the writer is already behind.
	if l.closed.Load() || l.lines.Load() >= l.limit {
		droppedLines.Add(1)
		return
	}
	var stack [1024]byte // most lines fit: encoding allocates nothing
	line := e.AppendJSON(stack[:0])
	l.mu.Lock()
	// closed is read again under the lock Close sets it under: a line either makes the final
	// flush or is counted as dropped, never lost silently.
	if l.lines.Load() >= l.limit || len(l.pending) >= maxPending || l.closed.Load() {
		l.mu.Unlock()
		droppedLines.Add(1)
		return
	}
	l.pending = append(l.pending, line...)
	n := l.lines.Add(1)
	kick := n == 1 || n == l.soon || len(l.pending) >= flushSize && len(l.pending)-len(line) < flushSize
	l.mu.Unlock()
	if kick {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// Dropped returns the number of access log lines dropped so far, process-wide.
func Dropped() uint64 { return droppedLines.Load() }

// Close writes what is queued, stops the writer and closes the file. Lines logged after Close
// are dropped. Close is idempotent.
func (l *AccessLog) Close() error {
	if l == nil || l.disabled {
		return nil
	}
	l.once.Do(func() {
		l.mu.Lock()
		l.closed.Store(true)
		l.mu.Unlock()
		close(l.stop)
		<-l.done
		openLogs.Lock()
		delete(openLogs.m, l)
		openLogs.Unlock()
		if l.closer != nil {
			l.closeErr = l.closer.Close()
		}
	})
	return l.closeErr
}

// AppendJSON appends e as one JSON object and a newline. Empty strings and zero attempts are
// left out; durations are milliseconds with microsecond precision.
func (e *Entry) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "method", e.Method)
	b = appendField(b, "host", e.Host)
	path := e.Path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	b = appendField(b, "path", path)
	b = appendField(b, "proto", e.Proto)
	b = appendField(b, "route", e.Route)
	b = appendField(b, "upstream", e.Upstream)
	b = appendField(b, "target", e.Target)
	if e.Attempts > 0 {
		b = append(b, `,"attempts":`...)
		b = strconv.AppendInt(b, int64(e.Attempts), 10)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, e.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, e.BytesOut, 10)
	gateway := e.Duration - e.UpstreamDuration
	if gateway < 0 {
		gateway = 0
	}
	b = appendMillis(b, "duration_ms", e.Duration)
	b = appendMillis(b, "upstream_ms", e.UpstreamDuration)
	b = appendMillis(b, "gateway_ms", gateway)
	b = appendField(b, "request_id", e.RequestID)
	if e.ClientIP.IsValid() {
		b = append(b, `,"client_ip":"`...)
		b = e.ClientIP.AppendTo(b)
		b = append(b, '"')
	}
	b = appendField(b, "principal", e.Principal)
	b = appendField(b, "denied_by", e.DeniedBy)
	b = appendField(b, "error_code", e.ErrorCode)
	b = appendField(b, "user_agent", e.UserAgent)
	return append(b, "}\n"...)
}

func appendMillis(b []byte, name string, d time.Duration) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendFloat(b, float64(d.Microseconds())/1000, 'f', 3, 64)
}

func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

// appendString appends s as a JSON string. Control characters are escaped (\n, \t, \u00XX) so a
// client cannot forge log lines; invalid UTF-8 becomes U+FFFD byte by byte so the line stays
// valid JSON whatever the client sent.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
