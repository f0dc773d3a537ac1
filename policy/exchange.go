package policy

import (
	"context"
	"net/http"
	"net/netip"
	"time"
)

// Exchange is the per-request state the server creates once for each request (from a pool) and
// every layer reads and fills in: one struct in the context instead of a chain of WithValue copies.
// Handlers must not keep a pointer to it after the request ends.
type Exchange struct {
	// Listener is the name of the listener the request came in on.
	Listener string
	// Route is the name of the matched route; empty when none matched.
	Route string
	// Params are the path parameters the route's template captured, in template order.
	Params Params
	// ClientIP is the client address after the trusted-proxy rules were applied.
	ClientIP netip.Addr
	// RequestID is the request's id, sent upstream and returned as X-Request-ID.
	RequestID string
	// Principal is the authenticated caller, when an authentication policy set one. A Principal
	// may be shared by many requests (policies build one per consumer): never modify it.
	Principal *Principal

	// Upstream and Target name the upstream pool and the target of the last attempt.
	Upstream, Target string
	// Attempts counts upstream attempts (retries included).
	Attempts int
	// Start is when the server began handling the request.
	Start time.Time
	// UpstreamTime is the time spent waiting for the upstream (dial to response headers).
	UpstreamTime time.Duration
	// DeniedBy is the id of the policy instance whose error ended the request, when one did.
	DeniedBy string
	// ErrorCode is the Code of the error that ended the request, when one did.
	ErrorCode string
	// BytesIn counts request body bytes read from the client.
	BytesIn int64
}

// Reset clears e for reuse, keeping the capacity of its slices.
func (e *Exchange) Reset() {
	*e = Exchange{Params: e.Params[:0]}
}

// Param is one captured path parameter.
type Param struct{ Name, Value string }

// Params are captured path parameters in template order.
type Params []Param

// Get returns the value of the parameter named name.
func (ps Params) Get(name string) (string, bool) {
	for _, p := range ps {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// MethodAnonymous is the Method of a policy's anonymous fallback: a consumer the caller was
// given for carrying no credential, not one it proved to be.
const MethodAnonymous = "anonymous"

// Principal is an authenticated caller: a consumer, or a token subject when no consumer maps.
type Principal struct {
	// ID is the stable consumer name or subject.
	ID string
	// Groups are the consumer's groups.
	Groups []string
	// Plan is the consumer's usage plan, when it has one.
	Plan string
	// Method is the authentication method that identified the caller ("api_key", "jwt").
	Method string
	// Credential names the credential that was used (an API key's id), when it has one; it
	// goes upstream as X-Credential-Identifier, never the secret itself.
	Credential string
	// Consumer is the configured consumer, or nil when the caller is a token subject that maps
	// to none.
	Consumer *Consumer
	// Scopes are the OAuth scopes the caller's token grants (from "scope" or "scp").
	Scopes []string
	// Claims holds token claims or other attributes authorization policies may check.
	Claims map[string]any
}

// Identified reports whether p is a caller a policy identified: neither nil nor an anonymous
// fallback. Per-consumer limits, usage and stickiness apply only to identified callers.
func (p *Principal) Identified() bool { return p != nil && p.Method != MethodAnonymous }

type exchangeKey struct{}

// WithExchange returns a context carrying e.
func WithExchange(ctx context.Context, e *Exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, e)
}

// ExchangeFrom returns the request's Exchange, or nil outside a request the server set up.
func ExchangeFrom(ctx context.Context) *Exchange {
	e, _ := ctx.Value(exchangeKey{}).(*Exchange)
	return e
}

// RouteFrom returns the matched route's name.
func RouteFrom(ctx context.Context) string {
	if e := ExchangeFrom(ctx); e != nil {
		return e.Route
	}
	return ""
}

// ClientIPFrom returns the trusted client IP.
func ClientIPFrom(ctx context.Context) netip.Addr {
	if e := ExchangeFrom(ctx); e != nil {
		return e.ClientIP
	}
	return netip.Addr{}
}

// PrincipalFrom returns the authenticated principal, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	if e := ExchangeFrom(ctx); e != nil {
		return e.Principal
	}
	return nil
}

// SetPrincipal records the authenticated principal for later policies, the proxy and the log.
func SetPrincipal(ctx context.Context, p *Principal) {
	if e := ExchangeFrom(ctx); e != nil {
		e.Principal = p
	}
}

// RequestIDFrom returns the request id.
func RequestIDFrom(ctx context.Context) string {
	if e := ExchangeFrom(ctx); e != nil {
		return e.RequestID
	}
	return ""
}

// ParamsFrom returns the captured path parameters.
func ParamsFrom(ctx context.Context) Params {
	if e := ExchangeFrom(ctx); e != nil {
		return e.Params
	}
	return nil
}

// Serve adapts a Handler to http.Handler for tests and simple embedding: a returned error is
// written as a plain-text status. The server uses its own renderer instead.
func Serve(h Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h.ServeHTTP(w, r); err != nil {
			status := http.StatusInternalServerError
			if pe, ok := err.(*Error); ok {
				for k, v := range pe.Header {
					w.Header()[k] = v
				}
				status = pe.Status
			}
			http.Error(w, http.StatusText(status), status)
		}
	})
}
