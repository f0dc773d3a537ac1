// Package admin is the admin API: config read, push and dry run, routes with their effective
// chains, upstream health, reload status, metrics and probes. It is an http.Handler; the server
// binds it on its own listener.
//
// Access rules (DESIGN.md, "Admin API"):
//   - "Loopback" means every bound address is loopback (":9901" and "0.0.0.0:9901" are not).
//     Off loopback, tokens are required; without any, every request is refused.
//   - On loopback a request must name an admin address in Host (DNS rebinding: a page on
//     attacker.example resolved to 127.0.0.1 still sends Host: attacker.example). Off loopback the
//     Host is not checked: a bearer token is required there and a browser never attaches one on
//     its own, so a rebound page gains nothing, while the names clients use for a public address
//     cannot be known here.
//   - An Origin header must be the admin's own origin (CSRF from a page the operator visits).
//   - Tokens (Authorization: Bearer) are compared in constant time against every configured
//     token. With tokens configured, reads need a read or write token; without tokens (loopback
//     only) reads need none.
//   - Write endpoints exist only when a write-scoped token is configured and then need that token
//     even on loopback, plus a JSON or YAML Content-Type (which a cross-site form cannot send
//     without a preflight).
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/limen-gateway/limen/internal/audit"
	"github.com/limen-gateway/limen/internal/usage"
)

// ErrPreconditionFailed is what Controller.Apply wraps when If-Match does not name the running
// config's hash; the API answers 412.
var ErrPreconditionFailed = errors.New("precondition failed")

// Controller is what the admin API drives; the runtime implements it. Errors from Validate and
// Apply may hold several problems (Unwrap() []error, or one problem per line of Error()); each is
// shown as "file:line: path: msg".
type Controller interface {
	Config() (redactedJSON []byte, hash string)
	Validate(doc []byte) error
	Apply(doc []byte, ifMatch string, actor string) (newHash string, err error)
	Routes() any
	Upstreams() any
	Status() any
	Ready() bool
	// Usage returns metered usage of consumer ("" for all) in [from, to), grouped by the named
	// dimensions; ErrUsageOff when metering is not configured.
	Usage(ctx context.Context, consumer string, from, to time.Time, groupBy []string) ([]usage.Row, error)
}

// ErrUsageOff is what Controller.Usage returns when the config has no usage: section.
var ErrUsageOff = errors.New("usage metering is off: add a top-level usage: section")

// Token is an admin credential. Scope is "read" or "write"; write includes read.
type Token struct{ Name, Secret, Scope string }

// Options configure the admin API.
type Options struct {
	// Addrs are every address the admin listener binds, as configured ("127.0.0.1:9901"). They
	// decide the loopback rule and the Host check. A port of 0 accepts any port on that host.
	Addrs []string
	// Tokens are the configured credentials.
	Tokens []Token
	// Audit receives the admin API's security events: refused credentials, config reads,
	// validations and rejected pushes (the runtime records applied pushes with their diff).
	Audit func(audit.Event)
}

// maxBody caps pushed configs: a config is text, and an unbounded read is a memory exhaustion.
const maxBody = 16 << 20

const scopeWrite = "write"

type api struct {
	tokens   []Token
	digests  [][32]byte // sha256 of each secret: equal-length inputs, so timing reveals no length
	usable   []int      // 1 for tokens with a non-empty secret; an empty secret never matches
	ctl      Controller
	metrics  http.Handler
	log      *slog.Logger
	loopback bool
	hosts    map[string]bool // host:port values Host and Origin may name (loopback only)
	anyPort  map[string]bool // hosts of addresses bound to port 0
	canWrite bool
	audit    func(audit.Event)
}

// endpoint is one admin path: a read handler (GET and HEAD) and/or a write handler for one
// method, which exists only when a write-scoped token is configured.
type endpoint struct {
	read        func(a *api, w http.ResponseWriter, r *http.Request)
	writeMethod string
	write       func(a *api, w http.ResponseWriter, r *http.Request, tok *Token)
}

var endpoints = map[string]endpoint{
	"/admin/config":          {read: (*api).getConfig, writeMethod: http.MethodPut, write: (*api).putConfig},
	"/admin/config/validate": {writeMethod: http.MethodPost, write: (*api).validate},
	"/admin/routes":          {read: func(a *api, w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, a.ctl.Routes()) }},
	"/admin/upstreams":       {read: func(a *api, w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, a.ctl.Upstreams()) }},
	"/admin/status":          {read: func(a *api, w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, a.ctl.Status()) }},
	"/admin/usage":           {read: (*api).usage},
	"/metrics": {read: func(a *api, w http.ResponseWriter, r *http.Request) {
		if a.metrics == nil {
			fail(w, http.StatusNotFound, "metrics are not enabled")
			return
		}
		a.metrics.ServeHTTP(w, r)
	}},
}

// New returns the admin API handler for a listener bound to o.Addrs. log receives one line per
// write (token name, remote address, resulting hash) and, at debug level, refused requests.
func New(o Options, ctl Controller, metrics http.Handler, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &api{tokens: o.Tokens, ctl: ctl, metrics: metrics, log: log, loopback: len(o.Addrs) > 0, audit: o.Audit,
		hosts: map[string]bool{}, anyPort: map[string]bool{}}
	for _, addr := range o.Addrs {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || !isLoopbackHost(host) {
			// ":9901" and "0.0.0.0:9901" listen on every interface: not loopback.
			a.loopback = false
			continue
		}
		names := []string{strings.ToLower(host)}
		if strings.EqualFold(host, "localhost") {
			names = append(names, "127.0.0.1", "::1")
		} else {
			// Browsers and tools name a loopback listener "localhost"; that name cannot be
			// rebound to another host, so it is the same origin.
			names = append(names, "localhost")
		}
		for _, n := range names {
			if port == "0" {
				a.anyPort[n] = true
			} else {
				a.hosts[net.JoinHostPort(n, port)] = true
			}
		}
	}
	for _, t := range o.Tokens {
		a.digests = append(a.digests, sha256.Sum256([]byte(t.Secret)))
		a.usable = append(a.usable, boolInt(t.Secret != ""))
		if t.Scope == scopeWrite {
			a.canWrite = true
		}
	}
	return a
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// NewOps serves only the probes and metrics, unauthenticated, for load balancers and scrapers.
func NewOps(ctl Controller, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { healthy(w) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { ready(w, ctl) })
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return mux
}

func healthy(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, "ok\n")
}

func ready(w http.ResponseWriter, ctl Controller) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if ctl.Ready() {
		_, _ = io.WriteString(w, "ready\n")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = io.WriteString(w, "not ready\n")
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.loopback && len(a.tokens) == 0 {
		// Reachable from the network with no credential configured: refuse everything rather
		// than expose config. Config validation rejects this setup too.
		a.refuse(w, r, http.StatusForbidden, "the admin API listens off loopback without tokens: configure admin.tokens")
		return
	}
	if a.loopback && !a.knownHost(r.Host, r.TLS != nil) {
		a.refuse(w, r, http.StatusForbidden, "the Host header must name the admin address")
		return
	}
	if o, ok := r.Header["Origin"]; ok && !a.ownOrigin(o, r) {
		a.refuse(w, r, http.StatusForbidden, "cross-origin admin requests are refused")
		return
	}
	path := r.URL.Path
	if path == "/healthz" || path == "/readyz" {
		// Probes carry no token: they reveal only that the process serves.
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			a.refuse(w, r, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		if path == "/healthz" {
			healthy(w)
		} else {
			ready(w, a.ctl)
		}
		return
	}
	tok := a.token(r)
	if len(a.tokens) > 0 && tok == nil {
		a.unauthorized(w, r)
		return
	}
	ep, ok := endpoints[path]
	allow := a.allow(ep)
	if !ok || allow == "" {
		msg := "no such admin endpoint"
		if ok {
			msg = "write endpoints are disabled: configure an admin token with scope: write"
		}
		a.refuse(w, r, http.StatusNotFound, msg)
		return
	}
	switch {
	case ep.read != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		ep.read(a, w, r)
	case ep.write != nil && a.canWrite && r.Method == ep.writeMethod:
		if tok == nil {
			a.unauthorized(w, r)
			return
		}
		if tok.Scope != scopeWrite {
			a.refuse(w, r, http.StatusForbidden, "this endpoint needs a token with scope: write")
			return
		}
		if !configType(r.Header.Get("Content-Type")) {
			a.refuse(w, r, http.StatusUnsupportedMediaType, "send the config as application/json or application/yaml")
			return
		}
		ep.write(a, w, r, tok)
	default:
		msg := "method not allowed"
		if ep.write != nil && !a.canWrite && r.Method == ep.writeMethod {
			msg = "write endpoints are disabled: configure an admin token with scope: write"
		}
		w.Header().Set("Allow", allow)
		a.refuse(w, r, http.StatusMethodNotAllowed, msg)
	}
}

// allow lists the methods an endpoint answers with the configured tokens; "" when none.
func (a *api) allow(ep endpoint) string {
	var m []string
	if ep.read != nil {
		m = append(m, http.MethodGet, http.MethodHead)
	}
	if ep.write != nil && a.canWrite {
		m = append(m, ep.writeMethod)
	}
	return strings.Join(m, ", ")
}

// knownHost reports whether a Host header names an admin address. A Host without a port means
// the scheme's default port.
func (a *api) knownHost(host string, tls bool) bool {
	host = strings.ToLower(host)
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = strings.Trim(host, "[]"), "80"
		if tls {
			port = "443"
		}
	}
	return a.hosts[net.JoinHostPort(h, port)] || a.anyPort[h]
}

// ownOrigin reports whether the Origin header values name the admin itself: the same scheme as
// this connection and, on loopback, an admin address; off loopback, the Host the request was sent
// to. "null" (sandboxed frames, file: pages) is never the admin.
func (a *api) ownOrigin(values []string, r *http.Request) bool {
	if len(values) != 1 {
		return false
	}
	u, err := url.Parse(values[0])
	if err != nil || u.Host == "" || u.Path != "" || u.User != nil {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if !strings.EqualFold(u.Scheme, scheme) {
		return false
	}
	if a.loopback {
		return a.knownHost(u.Host, r.TLS != nil)
	}
	return normalizeHostPort(u.Host, r.TLS != nil) == normalizeHostPort(r.Host, r.TLS != nil)
}

func normalizeHostPort(hp string, tls bool) string {
	hp = strings.ToLower(hp)
	if h, p, err := net.SplitHostPort(hp); err == nil {
		return net.JoinHostPort(h, p)
	}
	port := "80"
	if tls {
		port = "443"
	}
	return net.JoinHostPort(strings.Trim(hp, "[]"), port)
}

// token returns the token whose secret the request carries, or nil. Every configured token is
// compared, in constant time over equal-length digests and without branching on the result, so
// timing reveals neither which token matched nor how long the secrets are.
func (a *api) token(r *http.Request) *Token {
	if len(a.tokens) == 0 {
		return nil
	}
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	matched, index := 0, 0
	for i := range a.digests {
		eq := subtle.ConstantTimeCompare(sum[:], a.digests[i][:]) & a.usable[i]
		index = subtle.ConstantTimeSelect(eq&^matched&1, i, index) // the first match wins
		matched |= eq
	}
	if matched == 0 {
		return nil
	}
	return &a.tokens[index]
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (a *api) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="limen-admin"`)
	a.refuse(w, r, http.StatusUnauthorized, "an admin token is required (Authorization: Bearer <token>)")
}

func (a *api) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	a.log.Debug("admin request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "status", status)
	switch status {
	case http.StatusUnauthorized:
		a.record(r, nil, audit.Event{Event: audit.AuthnFailure, Status: status, Result: "unauthorized"})
	case http.StatusForbidden:
		e := audit.Event{Event: audit.AuthzDenied, Status: status, Result: "forbidden"}
		a.record(r, a.token(r), e)
	}
	fail(w, status, msg)
}

// record sends an admin event to the audit trail, naming the call, the caller and the token.
func (a *api) record(r *http.Request, tok *Token, e audit.Event) {
	if a.audit == nil {
		return
	}
	if e.Event == "" {
		e.Event = audit.Admin
	}
	e.Route, e.Action, e.Remote = "admin", r.Method+" "+r.URL.EscapedPath(), r.RemoteAddr
	if tok != nil {
		e.Actor = tok.Name
	}
	a.audit(e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// configType reports whether a Content-Type names JSON or YAML.
func configType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	switch mt {
	case "application/json", "application/yaml", "application/x-yaml", "text/yaml":
		return true
	}
	return false
}

func (a *api) getConfig(w http.ResponseWriter, r *http.Request) {
	doc, hash := a.ctl.Config()
	etag := `"` + hash + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-store")
	if inm := r.Header.Get("If-None-Match"); inm != "" && hash != "" && containsTag(inm, hash) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if r.Method == http.MethodGet {
		a.record(r, a.token(r), audit.Event{Result: "ok", OldHash: hash})
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(doc)
}

// readBody reads at most maxBody bytes, answering 413 beyond that and 400 on a broken body.
func (a *api) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			a.refuse(w, r, http.StatusRequestEntityTooLarge, "the config is larger than 16 MiB")
		} else {
			a.refuse(w, r, http.StatusBadRequest, "reading the request body failed")
		}
		return nil, false
	}
	return body, true
}

func (a *api) validate(w http.ResponseWriter, r *http.Request, tok *Token) {
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	if err := a.ctl.Validate(body); err != nil {
		a.log.Info("admin config validated", "token", tok.Name, "remote", r.RemoteAddr, "valid", false)
		a.record(r, tok, audit.Event{Result: "invalid", Errors: errorList(err)})
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"valid": false, "errors": errorList(err)})
		return
	}
	a.log.Info("admin config validated", "token", tok.Name, "remote", r.RemoteAddr, "valid", true)
	a.record(r, tok, audit.Event{Result: "valid"})
	writeJSON(w, http.StatusOK, map[string]any{"valid": true})
}

func (a *api) putConfig(w http.ResponseWriter, r *http.Request, tok *Token) {
	tags := parseETags(r.Header.Get("If-Match"))
	if len(tags) == 0 {
		a.refuse(w, r, http.StatusPreconditionRequired,
			`send If-Match with the ETag of GET /admin/config (If-Match: "<hash>"), so concurrent pushes cannot overwrite each other`)
		return
	}
	match := tags[0]
	if len(tags) > 1 {
		// A list matches when any tag is current; the controller checks one, so pick the
		// current one if it is listed (Apply re-checks under its own lock).
		if _, cur := a.ctl.Config(); containsTag(r.Header.Get("If-Match"), cur) {
			match = cur
		}
	}
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	hash, err := a.ctl.Apply(body, match, tok.Name+"@"+r.RemoteAddr)
	if err != nil {
		a.log.Warn("admin config push rejected", "token", tok.Name, "remote", r.RemoteAddr, "if_match", match, "err", err)
		_, cur := a.ctl.Config()
		a.record(r, tok, audit.Event{Result: "rejected", OldHash: cur, Errors: errorList(err)})
		if errors.Is(err, ErrPreconditionFailed) {
			fail(w, http.StatusPreconditionFailed, err.Error())
			return
		}
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"errors": errorList(err)})
		return
	}
	a.log.Info("admin config push applied", "token", tok.Name, "remote", r.RemoteAddr, "hash", hash)
	w.Header().Set("ETag", `"`+hash+`"`)
	writeJSON(w, http.StatusOK, map[string]string{"hash": hash})
}

// parseETags reads an If-Match or If-None-Match list into bare tags: quotes and the weak prefix
// dropped (config hashes are strong tags; a client that marks one weak still means it), bare
// unquoted tags accepted for curl users. "*" is not a tag: it would match any config and defeat
// the point of If-Match, so it yields nothing.
func parseETags(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		t := strings.TrimSpace(part)
		t = strings.TrimPrefix(t, "W/")
		t = strings.TrimSuffix(strings.TrimPrefix(t, `"`), `"`)
		if t != "" && t != "*" && !strings.ContainsAny(t, `" `) {
			out = append(out, t)
		}
	}
	return out
}

func containsTag(list, tag string) bool {
	for _, t := range parseETags(list) {
		if t == tag {
			return true
		}
	}
	return false
}

// errorList turns a validation error into one message per problem: the members of a list
// error, or the lines of any other error.
func errorList(err error) []string {
	out := []string{}
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if u, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range u.Unwrap() {
				walk(x)
			}
			return
		}
		for line := range strings.SplitSeq(e.Error(), "\n") {
			if strings.TrimSpace(line) != "" {
				out = append(out, line)
			}
		}
	}
	walk(err)
	return out
}

// maxUsageRange bounds one usage query (each hour of each consumer is one Redis read).
const maxUsageRange = 93 * 24 * time.Hour

// usage answers GET /admin/usage?consumer=&from=&to=&group_by=consumer,route,status,day and
// format=csv (or Accept: text/csv). from and to are RFC 3339 times or dates (YYYY-MM-DD, UTC);
// the default is the last 24 hours.
func (a *api) usage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	parse := func(name string, def time.Time) (time.Time, bool) {
		v := q.Get(name)
		if v == "" {
			return def, true
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			return t, true
		}
		if t, err := time.Parse(time.DateOnly, v); err == nil {
			return t, true
		}
		fail(w, http.StatusBadRequest, name+": want an RFC 3339 time or a YYYY-MM-DD date")
		return time.Time{}, false
	}
	now := time.Now()
	from, ok := parse("from", now.Add(-24*time.Hour))
	if !ok {
		return
	}
	to, ok := parse("to", now)
	if !ok {
		return
	}
	if !to.After(from) || to.Sub(from) > maxUsageRange {
		fail(w, http.StatusBadRequest, "want from < to, at most 93 days apart")
		return
	}
	groupBy := []string{"consumer"}
	if g := q.Get("group_by"); g != "" {
		groupBy = strings.Split(g, ",")
		for _, d := range groupBy {
			switch d {
			case "consumer", "route", "status", "hour", "day":
			default:
				fail(w, http.StatusBadRequest, "group_by: "+d+": want consumer, route, status, hour or day")
				return
			}
		}
		if slices.Contains(groupBy, "hour") && slices.Contains(groupBy, "day") {
			fail(w, http.StatusBadRequest, "group_by: hour and day exclude each other")
			return
		}
	}
	rows, err := a.ctl.Usage(r.Context(), q.Get("consumer"), from, to, groupBy)
	switch {
	case errors.Is(err, ErrUsageOff):
		fail(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		a.log.Warn("usage query failed", "err", err)
		fail(w, http.StatusServiceUnavailable, "the usage store is unavailable")
		return
	}
	if q.Get("format") == "csv" || strings.Contains(r.Header.Get("Accept"), "text/csv") {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		cw := csv.NewWriter(w)
		_ = cw.Write(append(append([]string{}, groupBy...), "requests", "bytes_in", "bytes_out"))
		for _, row := range rows {
			var rec []string
			for _, d := range groupBy {
				switch d {
				case "consumer":
					rec = append(rec, csvSafe(row.Consumer))
				case "route":
					rec = append(rec, csvSafe(row.Route))
				case "status":
					rec = append(rec, row.Class)
				case "hour", "day":
					rec = append(rec, row.Period)
				}
			}
			rec = append(rec, strconv.FormatInt(row.Requests, 10), strconv.FormatInt(row.BytesIn, 10), strconv.FormatInt(row.BytesOut, 10))
			_ = cw.Write(rec)
		}
		cw.Flush()
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"from": from, "to": to, "group_by": groupBy, "rows": rows})
}

// csvSafe keeps a cell from being read as a formula by a spreadsheet (consumer ids can come
// from a token's sub): a leading =, +, - or @ gets a quote in front (OWASP CSV injection).
func csvSafe(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}
