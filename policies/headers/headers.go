// Package headers provides the request_headers and response_headers policies: set, add and remove
// header fields, with values rendered from placeholder templates.
//
// request_headers changes the request before the rest of the chain and the upstream see it.
// response_headers changes the response of the upstream (or of the route's terminal) just before
// its header is written; error responses the server renders for a refused or failed request are
// not changed, since they come from the gateway, not the service.
package headers

import (
	"bufio"
	"net"
	"net/http"
	"sync"

	"github.com/limen-gateway/limen/policy"
)

// The kinds this package registers.
const (
	RequestKind  = "request_headers"
	ResponseKind = "response_headers"
)

// phases: Transform by default, and anywhere from Edge on, e.g. to tag requests before auth.
var phases = policy.PhaseRange{Default: policy.Transform, Min: policy.Edge, Max: policy.Transform}

func init() {
	policy.Register(RequestKind, phases, func(_ policy.BuildContext, c *Config) (policy.Policy, error) {
		o, err := c.compile()
		if err != nil {
			return nil, err
		}
		return &requestHeaders{ops: o}, nil
	})
	policy.Register(ResponseKind, phases, func(_ policy.BuildContext, c *Config) (policy.Policy, error) {
		o, err := c.compile()
		if err != nil {
			return nil, err
		}
		return &responseHeaders{ops: o}, nil
	})
}

var (
	_ policy.Policy = (*requestHeaders)(nil)
	_ policy.Policy = (*responseHeaders)(nil)
)

// requestHeaders applies its operations to r.Header before calling next.
type requestHeaders struct{ ops *ops }

// Wrap returns the handler that edits request headers.
func (p *requestHeaders) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		p.ops.apply(r.Header, r)
		return next.ServeHTTP(w, r)
	})
}

// responseHeaders applies its operations to the response header the first time the response
// commits to a status: on WriteHeader, Write, Flush or Hijack, or when next returns without
// writing anything (net/http then sends 200 with the header as it stands).
type responseHeaders struct{ ops *ops }

var writers = sync.Pool{New: func() any { return new(writer) }}

// Wrap returns the handler that edits response headers.
func (p *responseHeaders) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		rw := writers.Get().(*writer)
		*rw = writer{ResponseWriter: w, ops: p.ops, r: r}
		err := next.ServeHTTP(rw, r)
		if err == nil {
			// Nothing was written: the server will send the header as it stands now.
			rw.apply()
		}
		// An error is rendered by the server on w, with the header as it stands: the gateway's
		// own error responses are not the service's responses and are left alone.
		*rw = writer{}
		writers.Put(rw)
		return err
	})
}

// writer applies the response operations once, just before the header goes out. It implements
// Unwrap so http.ResponseController reaches the connection (flushing for SSE and gRPC, deadlines,
// full duplex), and Flush/Hijack directly because both commit the header.
type writer struct {
	http.ResponseWriter
	ops     *ops
	r       *http.Request
	applied bool
}

func (w *writer) apply() {
	if !w.applied {
		w.applied = true
		w.ops.apply(w.ResponseWriter.Header(), w.r)
	}
}

// WriteHeader applies the operations before a final status; informational (1xx) responses go
// out unchanged and leave the operations for the final one.
func (w *writer) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.apply()
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write applies the operations (Write implies WriteHeader(200)) and writes b.
func (w *writer) Write(b []byte) (int, error) {
	w.apply()
	return w.ResponseWriter.Write(b)
}

// Flush commits the header and flushes it and any buffered body to the client.
func (w *writer) Flush() {
	_ = w.FlushError()
}

// FlushError is Flush that reports failure; http.ResponseController prefers it.
func (w *writer) FlushError() error {
	w.apply()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack applies the operations first: httputil.ReverseProxy writes the 101 response of a
// protocol upgrade from this header after hijacking the connection.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.apply()
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap returns the wrapped ResponseWriter for http.ResponseController.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
