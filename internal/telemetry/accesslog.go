package telemetry

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/limen-gateway/limen/policy"
)

// Entry is one access log line.
type Entry struct {
	Time                       time.Time
	Method, Host, Path, Proto  string
	Route, Upstream, Target    string
	Attempts, Status           int
	BytesIn, BytesOut          int64
	Duration, UpstreamDuration time.Duration
	RequestID, ClientIP        string
	Principal, DeniedBy        string
	ErrorCode, UserAgent       string
}

// EntryFrom builds the entry for a finished request. The path never includes the query: it may
// carry credentials.
func EntryFrom(ex *policy.Exchange, r *http.Request, status int, bytesOut int64, now time.Time) Entry {
	e := Entry{
		Time: now, Method: r.Method, Host: r.Host, Path: r.URL.Path, Proto: r.Proto,
		Route: ex.Route, Upstream: ex.Upstream, Target: ex.Target, Attempts: ex.Attempts,
		Status: status, BytesIn: r.ContentLength, BytesOut: bytesOut,
		Duration: now.Sub(ex.Start), UpstreamDuration: ex.UpstreamTime,
		RequestID: ex.RequestID, DeniedBy: ex.DeniedBy, ErrorCode: ex.ErrorCode, UserAgent: r.UserAgent(),
	}
	if e.BytesIn < 0 {
		e.BytesIn = 0
	}
	if ex.ClientIP.IsValid() {
		e.ClientIP = ex.ClientIP.String()
	}
	if ex.Principal != nil {
		e.Principal = ex.Principal.ID
	}
	return e
}

// AccessLog writes entries as JSON lines from one goroutine. When the writer falls behind, lines
// are dropped and counted (limen_access_log_dropped_total): a slow disk never slows requests.
type AccessLog struct {
	w      io.Writer
	closer io.Closer
	lines  chan *[]byte
	done   chan struct{}

	mu     sync.RWMutex
	closed bool
}

var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// NewAccessLog opens output (stdout, stderr or a file path, appended to) and starts the writer.
// buffer is the number of lines that may wait for the writer (4096 when <= 0).
func NewAccessLog(output string, buffer int) (*AccessLog, error) {
	switch output {
	case "", "stdout":
		return newAccessLog(os.Stdout, nil, buffer), nil
	case "stderr":
		return newAccessLog(os.Stderr, nil, buffer), nil
	}
	f, err := os.OpenFile(output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return newAccessLog(f, f, buffer), nil
}

func newAccessLog(w io.Writer, c io.Closer, buffer int) *AccessLog {
	if buffer <= 0 {
		buffer = 4096
	}
	l := &AccessLog{w: w, closer: c, lines: make(chan *[]byte, buffer), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *AccessLog) run() {
	defer close(l.done)
	for b := range l.lines {
		// A failed write loses that line only; there is nobody to report it to per line.
		_, _ = l.w.Write(*b)
		putLine(b)
	}
}

// putLine recycles a line buffer; oversized ones (a huge user agent) are left to the GC so the
// pool does not pin large arrays.
func putLine(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	linePool.Put(b)
}

// Log queues one entry, or drops it when the queue is full or the log closed.
func (l *AccessLog) Log(e *Entry) {
	b := linePool.Get().(*[]byte)
	*b = e.appendJSON((*b)[:0])
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		droppedLines.Add(1)
		putLine(b)
		return
	}
	select {
	case l.lines <- b:
	default:
		droppedLines.Add(1)
		putLine(b)
	}
}

// Dropped returns the number of lines dropped so far, process-wide.
func Dropped() uint64 { return droppedLines.Load() }

// Close writes what is queued and stops the writer.
func (l *AccessLog) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.lines)
	l.mu.Unlock()
	<-l.done
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}

func (e *Entry) appendJSON(b []byte) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "method", e.Method)
	b = appendField(b, "host", e.Host)
	b = appendField(b, "path", e.Path)
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
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(e.Duration.Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"upstream_ms":`...)
	b = strconv.AppendFloat(b, float64(e.UpstreamDuration.Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"gateway_ms":`...)
	b = strconv.AppendFloat(b, float64((e.Duration-e.UpstreamDuration).Microseconds())/1000, 'f', 3, 64)
	b = appendField(b, "request_id", e.RequestID)
	b = appendField(b, "client_ip", e.ClientIP)
	b = appendField(b, "principal", e.Principal)
	b = appendField(b, "denied_by", e.DeniedBy)
	b = appendField(b, "error_code", e.ErrorCode)
	b = appendField(b, "user_agent", e.UserAgent)
	return append(b, "}\n"...)
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

func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
