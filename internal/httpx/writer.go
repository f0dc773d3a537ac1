package httpx

import (
	"bufio"
	"net"
	"net/http"
)

// StatusWriter records the status and size of a response. It implements Unwrap so
// http.ResponseController (flush, hijack, deadlines, full duplex) reaches the connection, and
// Flusher and Hijacker directly for code that still type-asserts.
type StatusWriter struct {
	w       http.ResponseWriter
	status  int
	bytes   int64
	written bool
}

// Reset points s at w and clears it, so one StatusWriter can be pooled.
func (s *StatusWriter) Reset(w http.ResponseWriter) { *s = StatusWriter{w: w} }

// Header returns the underlying header map.
func (s *StatusWriter) Header() http.Header { return s.w.Header() }

// WriteHeader records the final status; 1xx informational responses pass through unrecorded.
func (s *StatusWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		s.w.WriteHeader(code)
		return
	}
	if !s.written {
		s.status, s.written = code, true
	}
	s.w.WriteHeader(code)
}

// Write records the bytes written (and an implicit 200).
func (s *StatusWriter) Write(p []byte) (int, error) {
	if !s.written {
		s.status, s.written = http.StatusOK, true
	}
	n, err := s.w.Write(p)
	s.bytes += int64(n)
	return n, err
}

// Flush flushes the underlying writer when it can.
func (s *StatusWriter) Flush() {
	if !s.written {
		s.status, s.written = http.StatusOK, true
	}
	_ = http.NewResponseController(s.w).Flush()
}

// Hijack hands over the connection (WebSocket upgrades).
func (s *StatusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !s.written {
		s.status, s.written = http.StatusSwitchingProtocols, true
	}
	return http.NewResponseController(s.w).Hijack()
}

// Unwrap returns the underlying writer for http.ResponseController.
func (s *StatusWriter) Unwrap() http.ResponseWriter { return s.w }

// Status is the final status written, or 0 when none was.
func (s *StatusWriter) Status() int { return s.status }

// WroteHeader reports whether the response headers went out.
func (s *StatusWriter) WroteHeader() bool { return s.written }

// BytesWritten counts body bytes written.
func (s *StatusWriter) BytesWritten() int64 { return s.bytes }
