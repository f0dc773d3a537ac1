package policy

import (
	"net/http"
)

// Error is how a policy or terminal refuses a request. The server renders it once, as
// application/problem+json (RFC 9457) or, for gRPC requests, a trailers-only grpc-status, keeping
// headers outer policies already set; telemetry records Code and the policy that returned it.
type Error struct {
	// Status is the HTTP status to answer with.
	Status int
	// Code is a stable machine-readable reason, e.g. "ip_denied" or "upstream_timeout".
	Code string
	// Detail is a human-readable explanation safe to show the client.
	Detail string
	// Header holds extra response headers (WWW-Authenticate, Retry-After, Allow).
	Header http.Header
	// Err is the underlying cause, logged but never shown to the client.
	Err error
}

// Error returns the code and detail (and the cause, for logs).
func (e *Error) Error() string {
	s := e.Code
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf is shorthand for a refusal without a cause.
func Errorf(status int, code, detail string) *Error {
	return &Error{Status: status, Code: code, Detail: detail}
}
