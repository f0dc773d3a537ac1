// Package admin is the admin API: config read, push and dry run, routes with their effective
// chains, upstream health, reload status, metrics and probes. It is an http.Handler; the server
// binds it on its own listener.
//
// Access rules (DESIGN.md): "loopback" means every bound address is loopback; off loopback,
// tokens are required. Even on loopback a request must name the admin address in Host and carry
// no foreign Origin (DNS rebinding, CSRF). Writes need a JSON or YAML body and a write-scoped
// token, and exist only when one is configured.
package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ErrPreconditionFailed is returned by Controller.Apply when If-Match is stale.
var ErrPreconditionFailed = errors.New("precondition failed")

// Controller is what the admin API drives; the runtime implements it.
type Controller interface {
	Config() (redactedJSON []byte, hash string)
	Validate(doc []byte) error
	Apply(doc []byte, ifMatch string, actor string) (newHash string, err error)
	Routes() any
	Upstreams() any
	Status() any
	Ready() bool
}

// Token is an admin credential.
type Token struct{ Name, Secret, Scope string }

// Options configure the admin API.
type Options struct {
	// Addrs are the addresses the admin listener binds.
	Addrs  []string
	Tokens []Token
}

// maxBody caps pushed configs; a config is text, and an unbounded read is a memory exhaustion.
const maxBody = 16 << 20

type api struct {
	tokens   []Token
	secrets  [][32]byte // sha256 of each token's secret, so comparisons do not leak lengths
	ctl      Controller
	metrics  http.Handler
	log      *slog.Logger
	loopback bool
	hosts    map[string]bool
	canWrite bool
}

// endpoint is one admin route: the methods it answers and whether it changes or probes config
// (write: needs a write-scoped token and a config Content-Type).
type endpoint struct {
	methods string // for Allow
	write   bool
	serve   func(a *api, w http.ResponseWriter, r *http.Request, tok *Token)
}

var endpoints = map[string]endpoint{
	"/admin/config": {methods: "GET, HEAD, PUT", serve: func(a *api, w http.ResponseWriter, r *http.Request, tok *Token) {
		if r.Method == http.MethodPut {
			a.put(w, r, tok)
			return
		}
		doc, hash := a.ctl.Config()
		w.Header().Set("ETag", `"`+hash+`"`)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(doc)
	}},
	"/admin/config/validate": {methods: "POST", write: true, serve: func(a *api, w http.ResponseWriter, r *http.Request, tok *Token) {
		a.validate(w, r, tok)
	}},
	"/admin/routes": {methods: "GET, HEAD", serve: func(a *api, w http.ResponseWriter, _ *http.Request, _ *Token) {
		writeJSON(w, http.StatusOK, a.ctl.Routes())
	}},
	"/admin/upstreams": {methods: "GET, HEAD", serve: func(a *api, w http.ResponseWriter, _ *http.Request, _ *Token) {
		writeJSON(w, http.StatusOK, a.ctl.Upstreams())
	}},
	"/admin/status": {methods: "GET, HEAD", serve: func(a *api, w http.ResponseWriter, _ *http.Request, _ *Token) {
		writeJSON(w, http.StatusOK, a.ctl.Status())
	}},
	"/metrics": {methods: "GET, HEAD", serve: func(a *api, w http.ResponseWriter, r *http.Request, _ *Token) {
		if a.metrics == nil {
			fail(w, http.StatusNotFound, "metrics are not enabled")
			return
		}
		a.metrics.ServeHTTP(w, r)
	}},
}

// New returns the admin API handler for a listener bound to o.Addrs.
func New(o Options, ctl Controller, metrics http.Handler, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &api{tokens: o.Tokens, ctl: ctl, metrics: metrics, log: log, loopback: len(o.Addrs) > 0, hosts: map[string]bool{}}
	for _, addr := range o.Addrs {
		a.hosts[strings.ToLower(addr)] = true
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			a.loopback = false
			continue
		}
		ip, err := netip.ParseAddr(host)
		isLoop := strings.EqualFold(host, "localhost") || err == nil && ip.IsLoopback()
		if !isLoop {
			// ":9901" and "0.0.0.0:9901" listen on every interface: not loopback.
			a.loopback = false
			continue
		}
		// Browsers and curl name a loopback listener any of these ways; all are the same socket
		// family on this host, so none of them can be a rebinding attack.
		for _, h := range []string{"localhost", "127.0.0.1", "[::1]"} {
			a.hosts[h+":"+port] = true
		}
	}
	for _, t := range o.Tokens {
		a.secrets = append(a.secrets, sha256.Sum256([]byte(t.Secret)))
		if t.Scope == "write" {
			a.canWrite = true
		}
	}
	return a
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

// token returns the token whose secret the request carries, or nil. Every configured token is
// compared, in constant time over equal-length digests, so timing reveals neither which token
// matched nor how long the secrets are.
func (a *api) token(r *http.Request) *Token {
	auth := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(a.tokens) == 0 {
		return nil
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	found := -1
	for i := range a.secrets {
		eq := subtle.ConstantTimeCompare(sum[:], a.secrets[i][:])
		found = subtle.ConstantTimeSelect(eq&boolInt(found < 0), i, found)
	}
	if found < 0 {
		return nil
	}
	return &a.tokens[found]
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.loopback && len(a.tokens) == 0 {
		// Reachable from the network with no credential configured: refuse everything rather
		// than expose config. Config validation rejects this setup too.
		fail(w, http.StatusForbidden, "the admin API listens off loopback without tokens: configure admin.tokens")
		return
	}
	if !a.hosts[strings.ToLower(r.Host)] {
		fail(w, http.StatusForbidden, "the Host header must name the admin address")
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		host, ok := strings.CutPrefix(strings.ToLower(o), "http://")
		if !ok || !a.hosts[host] {
			fail(w, http.StatusForbidden, "cross-origin admin requests are refused")
			return
		}
	}
	path := r.URL.Path
	if path == "/healthz" || path == "/readyz" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			fail(w, http.StatusMethodNotAllowed, "method not allowed")
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
		w.Header().Set("WWW-Authenticate", `Bearer realm="limen-admin"`)
		fail(w, http.StatusUnauthorized, "an admin token is required (Authorization: Bearer <token>)")
		return
	}
	ep, ok := endpoints[path]
	if !ok {
		fail(w, http.StatusNotFound, "no such admin endpoint")
		return
	}
	if !strings.Contains(", "+ep.methods+",", ", "+r.Method+",") {
		w.Header().Set("Allow", ep.methods)
		fail(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if ep.write || r.Method == http.MethodPut {
		if !a.canWrite {
			fail(w, http.StatusNotFound, "write endpoints are disabled: configure an admin token with scope: write")
			return
		}
		if tok == nil || tok.Scope != "write" {
			fail(w, http.StatusForbidden, "this endpoint needs a token with scope: write")
			return
		}
		if !configType(r.Header.Get("Content-Type")) {
			fail(w, http.StatusUnsupportedMediaType, "send the config as application/json or application/yaml")
			return
		}
	}
	ep.serve(a, w, r, tok)
}

// configType reports whether a Content-Type names JSON or YAML. Requiring it blocks the
// "simple" cross-site form posts a browser sends without a preflight.
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

// readBody reads at most maxBody bytes, answering 413 beyond that and 400 on a broken body.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, "the config is larger than 16 MiB")
		} else {
			fail(w, http.StatusBadRequest, "reading the request body failed")
		}
		return nil, false
	}
	return body, true
}

func (a *api) validate(w http.ResponseWriter, r *http.Request, tok *Token) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	if err := a.ctl.Validate(body); err != nil {
		a.log.Info("admin config validate", "token", tok.Name, "remote", r.RemoteAddr, "valid", false)
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"valid": false, "errors": errorList(err)})
		return
	}
	a.log.Info("admin config validate", "token", tok.Name, "remote", r.RemoteAddr, "valid", true)
	writeJSON(w, http.StatusOK, map[string]any{"valid": true})
}

func (a *api) put(w http.ResponseWriter, r *http.Request, tok *Token) {
	match := strings.TrimSpace(r.Header.Get("If-Match"))
	if match == "" {
		fail(w, http.StatusPreconditionRequired, "send If-Match with the ETag of GET /admin/config, so concurrent pushes cannot overwrite each other")
		return
	}
	match = strings.Trim(strings.TrimPrefix(match, "W/"), `"`)
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	actor := tok.Name + "@" + r.RemoteAddr
	hash, err := a.ctl.Apply(body, match, actor)
	if err != nil {
		a.log.Warn("admin config push rejected", "token", tok.Name, "remote", r.RemoteAddr, "err", err)
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

// errorList turns a validation error into one message per problem.
func errorList(err error) []string {
	out := []string{}
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range u.Unwrap() {
			if e != nil {
				out = append(out, e.Error())
			}
		}
		return out
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}
