// Package forwardauth provides the forward_auth policy: every request is first described to an
// external HTTP service (Traefik's ForwardAuth, nginx's auth_request), whose answer decides. A
// 2xx lets the request through, with chosen headers of the answer set on the request that goes
// upstream and, optionally, the caller's identity; any other answer (a 401 challenge, a 302 to
// a login page, a 403) goes back to the client as the auth service wrote it.
//
// The auth request carries only what was verified or configured: the original method, scheme,
// host and URI, the trusted client IP (never a client's own X-Forwarded-For), the request id,
// and the listed request headers. The client never follows redirects, caps what it reads,
// ignores proxy environment variables, and is shared through the Pool so reloads keep its
// connections. An auth service that cannot be reached or answers too slowly or too much is a
// 503: the request is never let through by default.
package forwardauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/internal/outbound"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "forward_auth"

// maxResponseBytes caps the auth service's answer: a service that streams without end must not
// exhaust memory, and a refusal page has no business being larger.
const maxResponseBytes = 64 << 10

// maxCacheEntries bounds the decision cache of one instance.
const maxCacheEntries = 10000

// logEvery is the least time between two "auth service unavailable" log lines of one instance:
// an outage must not turn every request into a log line.
const logEvery = 10 * time.Second

// phases: Authn, or Edge to decide before anything else; up to Authz, where the auth service
// acts as an external authorization decision after another policy authenticated.
var phases = policy.PhaseRange{Default: policy.Authn, Min: policy.Edge, Max: policy.Authz}

func init() {
	policy.Register(Kind, phases, build)
}

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	ca := c.CA.Path(bc.BaseDir)
	timeout := c.Timeout.D()
	log := bc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &forwardAuth{
		cfg:       *c,
		id:        bc.ID,
		consumers: bc.Consumers,
		log:       log,
		strip:     append(append([]string(nil), c.ResponseHeaders...), c.IdentityHeader),
		unavailable: &policy.Error{Status: http.StatusServiceUnavailable, Code: "auth_unavailable",
			Detail: "the authentication service is not available; retry later", Header: http.Header{"Retry-After": {"5"}}},
		tooLarge: &policy.Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
			Detail: "the request body exceeds " + strconv.FormatInt(int64(c.MaxBody), 10) + " bytes"},
	}
	if c.IdentityHeader == "" {
		f.strip = f.strip[:len(f.strip)-1]
	}
	if c.CacheTTL.D() > 0 {
		f.cache = map[[32]byte]decision{}
	}
	key := "forward_auth|" + c.URL + "|" + ca + "|" + timeout.String()
	obj, release, err := bc.Acquire(key, func() (any, error) { return outbound.Service(ca, timeout) })
	if err != nil {
		return nil, err
	}
	f.client, f.release = obj.(*outbound.Closer), release
	return f, nil
}

var _ policy.Policy = (*forwardAuth)(nil)

type forwardAuth struct {
	cfg       Config
	id        string
	consumers policy.Consumers
	log       *slog.Logger
	client    *outbound.Closer
	release   func()
	strip     []string // response_headers and identity_header: the auth service's to set

	unavailable *policy.Error
	tooLarge    *policy.Error

	lastLog    atomic.Int64 // unix nanoseconds of the last "unavailable" log line
	suppressed atomic.Int64 // failures not logged since

	mu    sync.Mutex
	cache map[[32]byte]decision // nil without cache_ttl
}

// decision is what an allowing answer contributes to a request: the values of
// response_headers (aligned with cfg.ResponseHeaders, "" when absent) and the caller.
type decision struct {
	headers   []string
	principal *policy.Principal
	expires   time.Time
}

// Close releases the shared HTTP client.
func (f *forwardAuth) Close() error {
	f.release()
	return nil
}

// Wrap asks the auth service about every request and lets it through only on a 2xx answer.
func (f *forwardAuth) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		// These headers are the auth service's to set: a client's copies go whatever happens
		// next, so a refusal or an error cannot leave a forged one behind either.
		for _, h := range f.strip {
			r.Header.Del(h)
		}
		var body []byte
		if f.cfg.ForwardBody {
			var err error
			if body, err = f.readBody(r); err != nil {
				return err
			}
		}
		var key [32]byte
		if f.cache != nil {
			key = f.cacheKey(r, body)
			if d, ok := f.cached(key); ok {
				f.allow(r, d)
				return next.ServeHTTP(w, r)
			}
		}
		d, resp, err := f.ask(r, body)
		if err != nil {
			if r.Context().Err() == nil {
				f.logUnavailable(err) // not when the client went away: the service is not at fault
			}
			return &policy.Error{Status: f.unavailable.Status, Code: f.unavailable.Code,
				Detail: f.unavailable.Detail, Header: f.unavailable.Header, Err: err}
		}
		if resp != nil {
			f.deny(w, r, resp)
			return nil
		}
		if f.cache != nil {
			f.remember(key, d)
		}
		f.allow(r, d)
		return next.ServeHTTP(w, r)
	})
}

// readBody buffers up to max_body bytes of the request body and puts a replayable copy back
// for the upstream.
func (f *forwardAuth) readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	limit := int64(f.cfg.MaxBody)
	if r.ContentLength > limit {
		return nil, f.tooLarge
	}
	orig := r.Body
	buf, err := io.ReadAll(io.LimitReader(orig, limit+1))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, err // an earlier body_limit: rendered as 413
		}
		return nil, &policy.Error{Status: http.StatusBadRequest, Code: "bad_request_body",
			Detail: "the request body could not be read", Err: err}
	}
	if int64(len(buf)) > limit {
		return nil, f.tooLarge
	}
	r.Body = struct {
		io.Reader
		io.Closer
	}{bytes.NewReader(buf), orig}
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	r.ContentLength = int64(len(buf))
	r.TransferEncoding = nil
	return buf, nil
}

// hopByHop reports whether name is named by the request's Connection header (RFC 9110 §7.6.1),
// and so describes the client's connection only.
func hopByHop(r *http.Request, name string) bool {
	for _, v := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), name) {
				return true
			}
		}
	}
	return false
}

// ask sends the auth request. It returns the decision of a 2xx answer, or the answer to pass
// back to the client, or an error when there is no usable answer.
func (f *forwardAuth) ask(r *http.Request, body []byte) (decision, *answer, error) {
	ctx, cancel := context.WithTimeout(r.Context(), f.cfg.Timeout.D())
	defer cancel()
	var rb io.Reader
	if body != nil {
		rb = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, f.cfg.Method, f.cfg.URL, rb)
	if err != nil {
		return decision{}, nil, err
	}
	h := req.Header
	for _, name := range f.cfg.RequestHeaders {
		if vs := r.Header[name]; len(vs) > 0 && !hopByHop(r, name) {
			h[name] = vs
		}
	}
	if body != nil {
		if ct := r.Header["Content-Type"]; len(ct) > 0 {
			h["Content-Type"] = ct
		}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{"limen-forward-auth"}
	}
	proto, host := forwarded(r)
	h["X-Forwarded-Method"] = []string{r.Method}
	h["X-Forwarded-Proto"] = []string{proto}
	h["X-Forwarded-Host"] = []string{host}
	h["X-Forwarded-Uri"] = []string{r.URL.RequestURI()}
	if ip := policy.ClientIPFrom(r.Context()); ip.IsValid() {
		h["X-Forwarded-For"] = []string{ip.String()}
	}
	if id := policy.RequestIDFrom(r.Context()); id != "" {
		h["X-Request-Id"] = []string{id}
	}

	resp, err := f.client.Do(req)
	if err != nil {
		return decision{}, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// The answer's body is not needed, but reading it to the end keeps the connection.
		n, err := io.CopyN(io.Discard, resp.Body, maxResponseBytes+1)
		if err != nil && err != io.EOF {
			return decision{}, nil, fmt.Errorf("reading the auth service's answer: %w", err)
		}
		if n > maxResponseBytes {
			return decision{}, nil, fmt.Errorf("the auth service's answer is larger than %d bytes", maxResponseBytes)
		}
		return f.decide(resp.Header), nil, nil
	}
	if resp.StatusCode < 300 || resp.StatusCode > 599 {
		return decision{}, nil, fmt.Errorf("the auth service answered status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return decision{}, nil, fmt.Errorf("reading the auth service's answer: %w", err)
	}
	if len(b) > maxResponseBytes {
		return decision{}, nil, fmt.Errorf("the auth service's answer is larger than %d bytes", maxResponseBytes)
	}
	return decision{}, &answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// forwarded returns the scheme and host the client used. A trusted proxy's X-Forwarded-Proto
// and X-Forwarded-Host survived the server's hygiene; a client's own did not.
func forwarded(r *http.Request) (proto, host string) {
	if proto = r.Header.Get("X-Forwarded-Proto"); proto == "" {
		proto = "http"
		if r.TLS != nil {
			proto = "https"
		}
	}
	if host = r.Header.Get("X-Forwarded-Host"); host == "" {
		host = r.Host
	}
	return proto, host
}

// answer is a refusal passed back to the client.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// decide reads what an allowing answer contributes.
func (f *forwardAuth) decide(h http.Header) decision {
	var d decision
	if len(f.cfg.ResponseHeaders) > 0 {
		d.headers = make([]string, len(f.cfg.ResponseHeaders))
		for i, name := range f.cfg.ResponseHeaders {
			if vs := h[name]; len(vs) == 1 {
				d.headers[i] = vs[0]
			} else if len(vs) > 1 {
				d.headers[i] = strings.Join(vs, ", ") // a list field (RFC 9110 §5.3)
			}
		}
	}
	if f.cfg.IdentityHeader != "" {
		if id := strings.TrimSpace(h.Get(f.cfg.IdentityHeader)); id != "" {
			d.principal = f.principal(id)
		}
	}
	return d
}

// principal maps the identity the auth service named to the caller: the consumer of that name,
// or the bare identity.
func (f *forwardAuth) principal(id string) *policy.Principal {
	if f.consumers != nil {
		if c := f.consumers.Lookup(id); c != nil {
			return policy.PrincipalFor(c, Kind, "")
		}
	}
	return &policy.Principal{ID: id, Method: Kind}
}

// allow applies an allowing decision to the request before it goes on.
func (f *forwardAuth) allow(r *http.Request, d decision) {
	for i, v := range d.headers {
		if v != "" {
			authn.SetUpstreamHeader(r, f.cfg.ResponseHeaders[i], v)
		}
	}
	if d.principal != nil {
		policy.SetPrincipal(r.Context(), d.principal)
	}
}

// deny writes the auth service's refusal to the client as it came, minus what describes the
// auth service's own connection, and records the refusal for the access log.
func (f *forwardAuth) deny(w http.ResponseWriter, r *http.Request, a *answer) {
	if ex := policy.ExchangeFrom(r.Context()); ex != nil {
		ex.DeniedBy, ex.ErrorCode = f.id, "forward_auth_denied"
	}
	out := w.Header()
	for name, vs := range a.header {
		if _, hop := responseHopByHop[name]; hop || connectionNames(a.header, name) {
			continue
		}
		out[name] = vs
	}
	if a.status == http.StatusNotModified {
		// A 304 has no body, and its Content-Length would describe another response's
		// (RFC 9110 §15.4.5).
		w.WriteHeader(a.status)
		return
	}
	out["Content-Length"] = []string{strconv.Itoa(len(a.body))}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// responseHopByHop are the headers of the auth service's answer never passed to the client:
// hop-by-hop fields (RFC 9110 §7.6.1) and the framing of a body that is re-framed here.
var responseHopByHop = map[string]struct{}{
	"Connection": {}, "Keep-Alive": {}, "Proxy-Connection": {}, "Proxy-Authenticate": {},
	"Te": {}, "Trailer": {}, "Transfer-Encoding": {}, "Upgrade": {}, "Content-Length": {},
}

// connectionNames reports whether the answer's Connection header names name.
func connectionNames(h http.Header, name string) bool {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), name) {
				return true
			}
		}
	}
	return false
}

// logUnavailable logs an unusable auth call at most once per logEvery, with how many were
// not logged since.
func (f *forwardAuth) logUnavailable(err error) {
	now := time.Now().UnixNano()
	last := f.lastLog.Load()
	if now-last < int64(logEvery) || !f.lastLog.CompareAndSwap(last, now) {
		f.suppressed.Add(1)
		return
	}
	f.log.Warn("auth service unavailable; requests get 503", "url", f.cfg.URL, "err", err,
		"suppressed", f.suppressed.Swap(0))
}

// cacheKey digests what the auth service was told about the request that a cached answer may
// stand for: method, scheme, host, path and query, the copied headers and the body.
func (f *forwardAuth) cacheKey(r *http.Request, body []byte) [32]byte {
	h := sha256.New()
	write := func(s string) {
		var n [8]byte
		l := len(s)
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:]) // length-prefixed, so no two requests share a key by shifting bytes
		_, _ = io.WriteString(h, s)
	}
	proto, host := forwarded(r)
	write(r.Method)
	write(proto)
	write(host)
	write(r.URL.RequestURI())
	for _, name := range f.cfg.RequestHeaders {
		vs := r.Header[name]
		if hopByHop(r, name) {
			vs = nil
		}
		write(strconv.Itoa(len(vs)))
		for _, v := range vs {
			write(v)
		}
	}
	write(string(body))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (f *forwardAuth) cached(key [32]byte) (decision, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.cache[key]
	if !ok {
		return decision{}, false
	}
	if time.Now().After(d.expires) {
		delete(f.cache, key)
		return decision{}, false
	}
	return d, true
}

func (f *forwardAuth) remember(key [32]byte, d decision) {
	now := time.Now()
	d.expires = now.Add(f.cfg.CacheTTL.D())
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cache) >= maxCacheEntries {
		// Full: drop expired entries, then arbitrary ones; a miss only costs a call.
		for k, c := range f.cache {
			if len(f.cache) < maxCacheEntries && now.Before(c.expires) {
				break
			}
			delete(f.cache, k)
		}
	}
	f.cache[key] = d
}
