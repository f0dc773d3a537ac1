// Package proxy is the upstream terminal: an httputil.ReverseProxy (with Rewrite) per route, a
// retrying transport that picks a different target for each try, route and per-try timeouts,
// stream idle timeouts, upgrade rules and the mapping of failures to problem codes.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/internal/upstream"
	"github.com/limen-gateway/limen/policy"
)

// Options configure one route's proxy.
type Options struct {
	Route             string
	Upstream          *upstream.Upstream
	RewritePath       func(escapedPath string, ps policy.Params) string
	RewriteHost       string
	PreserveHost      bool
	Timeout           time.Duration
	StreamIdleTimeout time.Duration
	PerTryTimeout     time.Duration
	NonIdempotent     bool
	Attempts          *int
	Upgrades          []string
	// Identity names the headers that carry an authenticated caller upstream; empty names are
	// not sent.
	Identity IdentityHeaders
}

// IdentityHeaders name the headers set upstream for an authenticated request. They are set in
// Rewrite, after hop-by-hop removal, so a client's Connection header cannot delete them, and the
// server has already removed any copies the client sent.
type IdentityHeaders struct {
	ConsumerID, ConsumerGroups, ConsumerPlan, Credential, Anonymous string
}

// copyBuffer is the size of a stream's copy buffer.
const copyBuffer = 32 << 10

// bufferPool pools array pointers rather than slices: a slice put into a sync.Pool is boxed in
// a new allocation on every Put, an array pointer is not.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBuffer]byte)[:] }

func (b *bufferPool) Put(x []byte) {
	if len(x) == copyBuffer {
		b.p.Put((*[copyBuffer]byte)(x))
	}
}

// buffers is shared by every route: one 32 KiB copy buffer per stream in flight, reused.
var buffers = &bufferPool{p: sync.Pool{New: func() any { return new([copyBuffer]byte) }}}

type handler struct {
	o  Options
	up *upstream.Upstream
	rp *httputil.ReverseProxy
}

// New builds the proxy terminal for a route.
func New(o Options) (policy.Handler, error) {
	if o.Upstream == nil {
		return nil, errors.New("proxy: no upstream")
	}
	id := &o.Identity
	for _, name := range []*string{&id.ConsumerID, &id.ConsumerGroups, &id.ConsumerPlan, &id.Credential, &id.Anonymous} {
		*name = http.CanonicalHeaderKey(*name)
	}
	h := &handler{o: o, up: o.Upstream}
	h.rp = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      h,
		BufferPool:     buffers,
		ModifyResponse: h.modifyResponse,
		ErrorHandler: func(_ http.ResponseWriter, r *http.Request, err error) {
			// Never write here: the error is returned and rendered once by the dispatcher.
			if st := stateFrom(r.Context()); st != nil && st.err == nil {
				st.err = err
			}
		},
		ErrorLog: nil,
	}
	return h, nil
}

type stateKey struct{}

// state is one request's proxy bookkeeping. It is itself the outbound request's context (the
// cancellable request context plus a Value for stateKey), and it holds the request's stream
// wrappers and forwarding header values, so the proxy adds a handful of allocations per
// request rather than one per piece. One timer serves the whole request: it is the route
// timeout until response headers arrive, then the stream idle timeout.
type state struct {
	context.Context
	ex      *policy.Exchange
	err     error
	bodyErr error
	cancel  context.CancelFunc
	timer   *time.Timer
	start   time.Time
	// key is the request's hash key for a hash-balanced upstream, taken from the client's
	// request (its path, headers and cookies before rewriting) once for every attempt.
	key upstream.Key
	// phase is phaseHeaders until response headers arrive, then phaseStream; the timer's
	// callback reads it to tell a route timeout from an idle stream.
	phase    atomic.Int32
	timedOut atomic.Bool
	// vals backs the header values the proxy sets: a header value is a one-element slice,
	// and a separate one per header would be an allocation each.
	vals  [numVals]string
	watch bodyWatch
	idle  idleBody
}

const (
	phaseHeaders int32 = iota
	phaseStream
)

// Header value slots in state.vals.
const (
	valXFF = iota
	valXFHost
	valXFProto
	valForwarded
	valRequestID
	valResponseID
	valAnonymous
	valConsumerID
	valConsumerGroups
	valConsumerPlan
	valCredential
	numVals
)

func (st *state) Value(key any) any {
	if key == any(stateKey{}) {
		return st
	}
	return st.Context.Value(key)
}

// setHeader sets h[key] (key in canonical form) to v without allocating a value slice.
func (st *state) setHeader(h http.Header, slot int, key, v string) {
	st.vals[slot] = v
	h[key] = st.vals[slot : slot+1 : slot+1]
}

func (st *state) fire() {
	if st.phase.Load() == phaseHeaders {
		st.timedOut.Store(true)
	}
	st.cancel()
}

func stateFrom(ctx context.Context) *state {
	s, _ := ctx.Value(stateKey{}).(*state)
	return s
}

// idempotent reports whether a method may be retried without the route opting in (RFC 9110 §9.2.2).
func idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE":
		return true
	}
	return false
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	if up := r.Header.Get("Upgrade"); up != "" && !h.upgradeAllowed(up) {
		return policy.Errorf(http.StatusBadRequest, "upgrade_not_allowed", "this route does not allow upgrading to "+up)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st := &state{Context: ctx, ex: policy.ExchangeFrom(ctx), cancel: cancel, start: time.Now()}
	if h.o.Timeout > 0 {
		st.timer = time.AfterFunc(h.o.Timeout, st.fire)
	}
	defer func() {
		if st.timer != nil { // modifyResponse may have created it for the stream
			st.timer.Stop()
		}
	}()
	st.key = h.up.RequestKey(r, st.ex)
	r = r.WithContext(st)
	if r.Body != nil && r.Body != http.NoBody {
		st.watch = bodyWatch{ReadCloser: r.Body, st: st}
		r.Body = &st.watch
	}
	h.up.BeginRequest()
	defer h.up.EndRequest() // also when ReverseProxy aborts a broken stream with a panic
	h.rp.ServeHTTP(w, r)
	if st.err == nil {
		return nil
	}
	return h.classify(st)
}

func (h *handler) upgradeAllowed(up string) bool {
	for _, tok := range strings.Split(up, ",") {
		tok = strings.TrimSpace(tok)
		if i := strings.IndexByte(tok, '/'); i >= 0 {
			tok = tok[:i]
		}
		ok := false
		for _, a := range h.o.Upgrades {
			if strings.EqualFold(a, tok) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// classify maps a failure to the problem the client gets. The client's own broken body wins
// over anything it caused upstream.
func (h *handler) classify(st *state) error {
	err := st.err
	var mbe *http.MaxBytesError
	switch {
	case errors.As(st.bodyErr, &mbe) || errors.As(err, &mbe):
		return &policy.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Detail: "the request body is too large", Err: err}
	case st.bodyErr != nil:
		return &policy.Error{Status: http.StatusBadRequest, Code: "bad_request_body", Detail: "the request body could not be read", Err: st.bodyErr}
	case errors.Is(err, upstream.ErrNoHealthyTarget):
		return &policy.Error{Status: http.StatusServiceUnavailable, Code: "no_healthy_target", Detail: "no healthy upstream target", Err: err}
	case st.timedOut.Load() || errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return &policy.Error{Status: http.StatusGatewayTimeout, Code: "upstream_timeout", Detail: "the upstream did not answer in time", Err: err}
	case isDial(err):
		return &policy.Error{Status: http.StatusBadGateway, Code: "upstream_connect_failed", Detail: "the upstream could not be reached", Err: err}
	}
	return &policy.Error{Status: http.StatusBadGateway, Code: "upstream_bad_response", Detail: "the upstream failed", Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isDial(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

func (h *handler) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	st := stateFrom(in.Context())
	if st == nil {
		// Only ServeHTTP calls the ReverseProxy, always with a state.
		st = &state{Context: in.Context(), ex: policy.ExchangeFrom(in.Context())}
	}
	ex := st.ex
	path := in.URL.RawPath
	if path == "" {
		path = in.URL.EscapedPath()
	}
	if h.o.RewritePath != nil && ex != nil {
		path = h.o.RewritePath(path, ex.Params)
	}
	out.URL.Scheme, out.URL.Host = "http", "upstream.invalid" // the transport sets the target per try
	out.URL.Path, out.URL.RawPath = httpx.UnescapePath(path), path
	out.URL.RawQuery = in.URL.RawQuery
	switch {
	case h.o.RewriteHost != "":
		out.Host = h.o.RewriteHost
	case h.o.PreserveHost:
		out.Host = in.Host
	default:
		out.Host = ""
	}
	// Forwarding headers are set here, after hop-by-hop removal, so a client's
	// "Connection: X-Forwarded-For" cannot delete them. Incoming copies survived hygiene only
	// from trusted proxies; they are extended, never trusted otherwise: X-Forwarded-For and an
	// existing Forwarded chain get the node Limen heard from (the TCP peer, or the PROXY
	// protocol source); a new Forwarded element starts with the resolved client IP, so an
	// upstream that reads only Forwarded still learns what an X-Forwarded-For chain said.
	peer := in.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	if prior := in.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		st.setHeader(out.Header, valXFF, "X-Forwarded-For", strings.Join(prior, ", ")+", "+peer)
	} else {
		st.setHeader(out.Header, valXFF, "X-Forwarded-For", peer)
	}
	if fh := in.Header.Get("X-Forwarded-Host"); fh != "" {
		st.setHeader(out.Header, valXFHost, "X-Forwarded-Host", fh)
	} else {
		st.setHeader(out.Header, valXFHost, "X-Forwarded-Host", in.Host)
	}
	if fp := in.Header.Get("X-Forwarded-Proto"); fp != "" {
		st.setHeader(out.Header, valXFProto, "X-Forwarded-Proto", fp)
	} else {
		st.setHeader(out.Header, valXFProto, "X-Forwarded-Proto", proto)
	}
	var stack [128]byte
	fwd := stack[:0]
	priorFwd := in.Header.Values("Forwarded")
	for _, prior := range priorFwd {
		fwd = append(fwd, prior...)
		fwd = append(fwd, ", "...)
	}
	node, _ := netip.ParseAddr(peer)
	if len(priorFwd) == 0 && ex != nil && ex.ClientIP.IsValid() {
		node = ex.ClientIP
	}
	fwd = append(fwd, "for="...)
	fwd = httpx.AppendForwardedNode(fwd, node)
	fwd = append(fwd, `;host="`...)
	for i := 0; i < len(in.Host); i++ {
		if c := in.Host[i]; c != '"' && c != '\\' {
			fwd = append(fwd, c)
		}
	}
	fwd = append(fwd, `";proto=`...)
	fwd = append(fwd, proto...)
	st.setHeader(out.Header, valForwarded, "Forwarded", string(fwd))
	if ex != nil && ex.RequestID != "" {
		st.setHeader(out.Header, valRequestID, "X-Request-Id", ex.RequestID)
	}
	if ex != nil && ex.Principal != nil {
		h.setIdentity(st, out.Header, ex.Principal)
	}
}

// setIdentity sets the identity headers for p. Their names were canonicalized in New, so no
// per-request canonicalization, and their values live in st like the forwarding headers.
func (h *handler) setIdentity(st *state, hdr http.Header, p *policy.Principal) {
	id := &h.o.Identity
	set := func(slot int, name, v string) {
		if name != "" && v != "" {
			st.setHeader(hdr, slot, name, v)
		}
	}
	if p.Method == policy.MethodAnonymous {
		set(valAnonymous, id.Anonymous, "true")
	}
	set(valConsumerID, id.ConsumerID, p.ID)
	if len(p.Groups) > 0 {
		set(valConsumerGroups, id.ConsumerGroups, strings.Join(p.Groups, ","))
	}
	set(valConsumerPlan, id.ConsumerPlan, p.Plan)
	set(valCredential, id.Credential, p.Credential)
}

func (h *handler) modifyResponse(resp *http.Response) error {
	st := stateFrom(resp.Request.Context())
	if st == nil {
		return nil
	}
	st.phase.Store(phaseStream)
	// The route timeout runs until response headers only; from here the same timer, when
	// there is one, bounds the silence between reads of a streamed body.
	idle := h.o.StreamIdleTimeout > 0 && resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil
	switch {
	case !idle:
		if st.timer != nil {
			st.timer.Stop()
		}
	case st.timer == nil:
		st.timer = time.AfterFunc(h.o.StreamIdleTimeout, st.fire)
	default:
		st.timer.Reset(h.o.StreamIdleTimeout)
	}
	if idle {
		st.idle = idleBody{ReadCloser: resp.Body, d: h.o.StreamIdleTimeout, timer: st.timer}
		resp.Body = &st.idle
	}
	if ex := st.ex; ex != nil {
		ex.UpstreamTime = time.Since(st.start)
		if ex.RequestID != "" {
			st.setHeader(resp.Header, valResponseID, "X-Request-Id", ex.RequestID)
		}
	}
	return nil
}

// RoundTrip sends the request to a target, retrying on another one when the policy allows.
func (h *handler) RoundTrip(req *http.Request) (*http.Response, error) {
	var ex *policy.Exchange
	var key upstream.Key
	if st := stateFrom(req.Context()); st != nil {
		ex, key = st.ex, st.key
	}
	rp := h.up.Retry()
	attempts := 1 + rp.Attempts
	if h.o.Attempts != nil {
		attempts = 1 + *h.o.Attempts
	}
	if !idempotent(req.Method) && !h.o.NonIdempotent || req.Header.Get("Upgrade") != "" {
		attempts = 1
	}
	var replay []byte
	if attempts > 1 && req.Body != nil && req.Body != http.NoBody {
		if req.ContentLength > rp.MaxBody || rp.MaxBody <= 0 {
			attempts = 1
		} else {
			buf, err := io.ReadAll(io.LimitReader(req.Body, rp.MaxBody+1))
			if err != nil {
				return nil, err
			}
			if int64(len(buf)) > rp.MaxBody {
				attempts = 1 // too large to replay: stream what was read, then the rest
				req.Body = struct {
					io.Reader
					io.Closer
				}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
			} else {
				replay = buf
			}
		}
	}
	var triedBuf [4]*upstream.Target
	tried := triedBuf[:0]
	for i := 0; ; i++ {
		t, err := h.up.PickKey(tried, key)
		if err != nil && len(tried) > 0 {
			// Every available target was tried: a retry may go to one of them again.
			t, err = h.up.PickKey(nil, key)
		}
		if err != nil {
			return nil, err
		}
		tried = append(tried, t)
		out := req
		if i > 0 {
			out = req.Clone(req.Context())
		}
		out.URL.Scheme, out.URL.Host = t.URL.Scheme, t.URL.Host
		if replay != nil {
			out.Body = io.NopCloser(bytes.NewReader(replay))
			out.ContentLength = int64(len(replay))
		}
		if ex != nil {
			ex.Upstream, ex.Target, ex.Attempts = h.up.Name(), t.Key, i+1
		}
		resp, err := h.try(out, t)
		if err == nil && !retryStatus(rp, resp.StatusCode) {
			return resp, nil
		}
		// The last attempt's outcome passes through as it is; so does one the budget cannot retry.
		if i == attempts-1 || req.Context().Err() != nil || err != nil && !retryable(rp, err) || !h.up.TryRetry() {
			return resp, err
		}
		if resp != nil {
			_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
			resp.Body.Close()
		}
		backoff(req.Context(), rp.Backoff, i+1)
		h.up.DoneRetry()
	}
}

// try runs one attempt with the per-try timeout, reporting the outcome for passive health.
func (h *handler) try(req *http.Request, t *upstream.Target) (*http.Response, error) {
	var timer *time.Timer
	var cancel context.CancelFunc
	fired := false
	if h.o.PerTryTimeout > 0 {
		var ctx context.Context
		ctx, cancel = context.WithCancel(req.Context())
		timer = time.AfterFunc(h.o.PerTryTimeout, func() { fired = true; cancel() })
		req = req.WithContext(ctx)
	}
	t.Begin()
	start := time.Now()
	resp, err := h.up.Transport().RoundTrip(req)
	outcome := upstream.Success
	if err != nil || resp.StatusCode == 502 || resp.StatusCode == 503 || resp.StatusCode == 504 {
		outcome = upstream.Failure
	}
	// The latency is the time to response headers, what the ewma balancer estimates.
	h.up.End(t, outcome, time.Since(start))
	if timer != nil {
		stopped := timer.Stop() // the per-try timeout covers the wait for headers only
		switch {
		case err != nil:
			cancel()
			if !stopped && fired {
				err = errPerTryTimeout
			}
		default:
			resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
		}
	}
	return resp, err
}

// errPerTryTimeout is a timeout (net.Error with Timeout true) so it retries on "timeout".
var errPerTryTimeout = perTryTimeout{}

type perTryTimeout struct{}

func (perTryTimeout) Error() string   { return "upstream attempt timed out" }
func (perTryTimeout) Timeout() bool   { return true }
func (perTryTimeout) Temporary() bool { return true }

func retryStatus(rp upstream.RetryPolicy, code int) bool {
	for _, s := range rp.OnStatus {
		if s == code {
			return true
		}
	}
	return false
}

func retryable(rp upstream.RetryPolicy, err error) bool {
	switch {
	case errors.Is(err, upstream.ErrNoHealthyTarget):
		return false
	case isDial(err):
		return rp.OnConnectFailure
	case isTimeout(err):
		return rp.OnTimeout
	}
	return rp.OnReset
}

// backoff sleeps a jittered exponential delay (full jitter), or until ctx ends.
func backoff(ctx context.Context, base time.Duration, attempt int) {
	if base <= 0 {
		return
	}
	d := base << min(attempt-1, 6)
	d = time.Duration(rand.Int64N(int64(d) + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// bodyWatch records the client's body read errors, so a broken request body is the client's 400,
// not the upstream's 502.
type bodyWatch struct {
	io.ReadCloser
	st *state
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.st.bodyErr == nil {
		b.st.bodyErr = err
	}
	return n, err
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelBody) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// idleBody cancels the request when the upstream stays silent longer than the idle timeout.
// The timer belongs to the request's state, which stops it when the request ends.
type idleBody struct {
	io.ReadCloser
	d     time.Duration
	timer *time.Timer
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.timer.Reset(b.d)
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	return b.ReadCloser.Close()
}
