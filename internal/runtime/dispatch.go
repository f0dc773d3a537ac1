package runtime

import (
	"net/http"
	"sync"
	"time"

	"github.com/limen-gateway/limen/internal/audit"
	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/internal/router"
	"github.com/limen-gateway/limen/internal/telemetry"
	"github.com/limen-gateway/limen/policy"
)

var writerPool = sync.Pool{New: func() any { return new(httpx.StatusWriter) }}

// ServeHTTP is the dispatcher the server calls after request hygiene: it loads the snapshot once,
// routes, runs the route's chain, renders an error once if the chain returned one, and records
// metrics and the access log.
func (rt *Runtime) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var s *Snapshot
	for {
		if s = rt.current.Load(); s == nil {
			httpx.WriteProblem(w, r, http.StatusServiceUnavailable, "not_ready", "no configuration is loaded")
			return
		}
		if s.enter() {
			break
		}
	}
	defer s.leave()

	ex := policy.ExchangeFrom(r.Context())
	if ex == nil {
		// Only the server creates requests; a missing exchange is a wiring bug, not client input.
		ex = &policy.Exchange{Start: time.Now()}
		r = r.WithContext(policy.WithExchange(r.Context(), ex))
	}
	sw := writerPool.Get().(*httpx.StatusWriter)
	sw.Reset(w)
	defer func() {
		sw.Reset(nil)
		writerPool.Put(sw)
	}()

	route, err := s.route(ex, r)
	defer func() {
		// An aborted stream (ReverseProxy, or the cut below, panics with ErrAbortHandler) was
		// still served in part: it is metered and logged before the panic goes on to the server.
		if p := recover(); p != nil {
			s.record(rt, ex, r, route, sw.Status(), sw, time.Now())
			panic(p)
		}
	}()
	if err == nil {
		err = route.handler.ServeHTTP(sw, r)
	}
	status := sw.Status()
	if err != nil {
		if sw.WroteHeader() {
			// The response is already on its way: the only honest signal left is to cut it.
			panic(http.ErrAbortHandler)
		}
		var code string
		status, code = httpx.WriteError(sw, r, err)
		ex.ErrorCode = code
		if rt.opts.Metrics != nil && ex.DeniedBy != "" {
			rt.opts.Metrics.Denied(ex.Route, ex.DeniedBy, code)
		}
	}
	if s.audit != nil && ex.DeniedBy != "" && (status == http.StatusUnauthorized || status == http.StatusForbidden) {
		s.auditDenial(ex, r, status)
	}
	s.record(rt, ex, r, route, status, sw, time.Now())
}

// record observes a finished (or aborted) request: metrics, usage metering, the access log.
func (s *Snapshot) record(rt *Runtime, ex *policy.Exchange, r *http.Request, route *Route, status int, sw *httpx.StatusWriter, now time.Time) {
	if route != nil && route.metrics != nil {
		route.metrics.Observe(r.Method, status, now.Sub(ex.Start))
	} else if route == nil && rt.opts.Metrics != nil {
		rt.opts.Metrics.Route("").Observe(r.Method, status, now.Sub(ex.Start))
	}
	if s.usage != nil && ex.Principal.Identified() && route != nil {
		s.usage.Record(ex.Principal.ID, ex.Route, status, ex.BytesIn, sw.BytesWritten(), now)
	}
	if s.access != nil {
		e := telemetry.EntryFrom(ex, r, status, sw.BytesWritten(), now)
		s.access.Log(&e)
	}
}

// route matches the request on its listener's table. A CORS preflight is matched against the
// method it asks about, so the route that will serve the real request answers it.
func (s *Snapshot) route(ex *policy.Exchange, r *http.Request) (*Route, error) {
	lr := s.listeners[ex.Listener]
	if lr == nil {
		return nil, policy.Errorf(http.StatusNotFound, "route_not_found", "no route matches this request")
	}
	method := r.Method
	if method == http.MethodOptions && r.Header.Get("Origin") != "" {
		if m := r.Header.Get("Access-Control-Request-Method"); m != "" {
			method = m
		}
	}
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	idx, params, allow := lr.table.Match(method, r.URL.Host, path, r.Header, r.URL.RawQuery, ex.Params[:0])
	ex.Params = params
	switch idx {
	case router.NotFound:
		return nil, policy.Errorf(http.StatusNotFound, "route_not_found", "no route matches this request")
	case router.MethodNotAllowed:
		return nil, &policy.Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Detail: "the route does not allow this method", Header: http.Header{"Allow": {allow}}}
	}
	route := lr.routes[idx]
	ex.Route = route.Name
	return route, nil
}

// auditDenial records a policy's 401 (an authentication failure) or 403 (an authorization
// denial) in the audit trail, which rate-limits them.
func (s *Snapshot) auditDenial(ex *policy.Exchange, r *http.Request, status int) {
	e := audit.Event{
		Event: audit.AuthzDenied, RequestID: ex.RequestID, Method: r.Method, Host: r.Host,
		Path: r.URL.EscapedPath(), Route: ex.Route, Policy: ex.DeniedBy, Code: ex.ErrorCode, Status: status,
	}
	if status == http.StatusUnauthorized {
		e.Event = audit.AuthnFailure
	}
	if ex.ClientIP.IsValid() {
		e.ClientIP = ex.ClientIP.String()
	}
	if ex.Principal != nil {
		e.Principal = ex.Principal.ID
	}
	s.audit.Request(e)
}
