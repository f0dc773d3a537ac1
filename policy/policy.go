// Package policy is Limen's public extension API: the handler and policy types every step of a
// route's chain implements, the registry that policy kinds join in init(), phases, the error type
// policies refuse requests with, and typed accessors for per-request state.
//
// It imports only the standard library so out-of-tree plugins depend on nothing else of Limen's.
package policy

import (
	"io"
	"log/slog"
	"net/http"
	"sync"
)

// Handler serves a request and returns an error instead of writing an error response itself, so
// errors are rendered once, by the server, and recorded by telemetry (the Caddy model).
type Handler interface {
	ServeHTTP(w http.ResponseWriter, r *http.Request) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// ServeHTTP calls f(w, r).
func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

// Policy is one provisioned step of a route's chain. Wrap runs once when a snapshot is built,
// never per request. A Policy that holds resources also implements io.Closer; Close is called when
// the snapshot that built it is released.
type Policy interface {
	Wrap(next Handler) Handler
}

// Func adapts a wrapping function to Policy.
type Func func(next Handler) Handler

// Wrap calls f(next).
func (f Func) Wrap(next Handler) Handler { return f(next) }

// BuildContext is what a policy kind's build function receives besides its decoded config.
type BuildContext struct {
	// ID is the stable instance id: the name of a shared instance ("public-cors"), or
	// "routes/<route>/<kind>#<n>" for an inline one. State that must survive reloads (counters,
	// caches) is keyed by it, never by a hash of the config.
	ID string
	// Kind is the policy kind being built ("cors").
	Kind string
	// Route is the route an inline instance belongs to; empty for shared instances.
	Route string
	// Logger is scoped to the instance.
	Logger *slog.Logger
	// Pool holds reference-counted objects that outlive a snapshot.
	Pool Pool
	// BaseDir is the directory relative file paths in the config are resolved against.
	BaseDir string
	// Consumers is the snapshot's consumer directory; never nil when runtime builds a policy.
	Consumers Consumers
	// Shared holds the shared-state engines configured under the top-level state: key, by name
	// ("redis"). Their types are Limen's own, for in-tree policies; nil entries are absent.
	Shared map[string]any
}

// Acquire takes the object under key from bc.Pool. Without a pool (a policy built outside a
// gateway, as in a unit test) the object is created for this instance alone, and release closes
// it if it is an io.Closer. Either way release must be called once the instance is done with it.
func (bc BuildContext) Acquire(key string, create func() (any, error)) (obj any, release func(), err error) {
	if bc.Pool != nil {
		return bc.Pool.Acquire(key, create)
	}
	if obj, err = create(); err != nil {
		return nil, nil, err
	}
	return obj, sync.OnceFunc(func() {
		if c, ok := obj.(io.Closer); ok {
			_ = c.Close()
		}
	}), nil
}

// Pool holds objects that outlive a single snapshot (limiters, caches, JWKS sets, health checkers),
// keyed by what they are. Acquire returns the object stored under key, creating it with create when
// absent, and a release function the caller must call exactly once when it no longer needs it.
// When the last holder releases an object that implements io.Closer, it is closed.
type Pool interface {
	Acquire(key string, create func() (any, error)) (obj any, release func(), err error)
}

// Reporter is implemented by policies with live state worth showing an operator (a circuit
// breaker's state). GET /admin/routes includes the report beside the chain step.
type Reporter interface {
	Report() map[string]any
}

// Closer is implemented by policies and pooled objects that hold resources.
type Closer = io.Closer
