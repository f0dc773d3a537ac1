// Package bodylimit provides the body_limit policy: it caps the size of request bodies.
//
// A request that declares a larger Content-Length is refused at once with 413 body_too_large,
// before a byte of the body is read. A body of unknown length (chunked, or an HTTP/2 stream
// without content-length) is wrapped in http.MaxBytesReader, so reading it fails at the limit
// with *http.MaxBytesError, which the proxy and the error renderer map to 413.
package bodylimit

import (
	"fmt"
	"net/http"

	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "body_limit"

// phases: Edge by default, before anything buffers or inspects the body; up to Validate, where
// body validation starts.
var phases = policy.PhaseRange{Default: policy.Edge, Min: policy.Edge, Max: policy.Validate}

func init() {
	policy.Register(Kind, phases, func(_ policy.BuildContext, c *Config) (policy.Policy, error) {
		return &limit{
			max: int64(c.Max),
			err: &policy.Error{
				Status: http.StatusRequestEntityTooLarge,
				Code:   "body_too_large",
				Detail: fmt.Sprintf("the request body exceeds %d bytes", int64(c.Max)),
			},
		}, nil
	})
}

var _ policy.Policy = (*limit)(nil)

// limit is a provisioned body_limit.
type limit struct {
	max int64
	err *policy.Error // shared and read-only; its detail holds only the configured limit
}

// Wrap returns the handler that enforces the limit.
func (l *limit) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		switch {
		case r.ContentLength > l.max:
			return l.err
		case r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
			// Unknown length: cut the stream at the limit. A declared length needs no wrapper,
			// as net/http already stops HTTP/1.1 bodies there and refuses HTTP/2 streams that
			// send more than they declared.
			r.Body = http.MaxBytesReader(w, r.Body, l.max)
		}
		return next.ServeHTTP(w, r)
	})
}
