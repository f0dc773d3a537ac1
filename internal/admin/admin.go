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
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
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

const maxBody = 16 << 20

type api struct {
	o        Options
	ctl      Controller
	metrics  http.Handler
	log      *slog.Logger
	loopback bool
	hosts    map[string]bool
	canWrite bool
}

// New returns the admin API handler.
func New(o Options, ctl Controller, metrics http.Handler, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &api{o: o, ctl: ctl, metrics: metrics, log: log, loopback: len(o.Addrs) > 0, hosts: map[string]bool{}}
	for _, addr := range o.Addrs {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			a.loopback = false
			continue
		}
		ip, err := netip.ParseAddr(host)
		isLoop := host == "localhost" || err == nil && ip.IsLoopback()
		if !isLoop {
			a.loopback = false
		}
		a.hosts[strings.ToLower(addr)] = true
		if isLoop {
			for _, h := range []string{"localhost", "127.0.0.1", "[::1]"} {
				a.hosts[h+":"+port] = true
			}
		}
	}
	for _, t := range o.Tokens {
		if t.Scope == "write" {
			a.canWrite = true
		}
	}
	return a
}

// NewOps serves only the probes and metrics, unauthenticated, for load balancers and scrapers.
func NewOps(ctl Controller, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { ready(w, ctl) })
	mux.Handle("GET /metrics", metrics)
	return mux
}

func ready(w http.ResponseWriter, ctl Controller) {
	if ctl.Ready() {
		io.WriteString(w, "ready\n")
		return
	}
	http.Error(w, "not ready", http.StatusServiceUnavailable)
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

// token returns the matching token, comparing against every token in constant time.
func (a *api) token(r *http.Request) *Token {
	auth := r.Header.Get("Authorization")
	secret, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return nil
	}
	var found *Token
	for i := range a.o.Tokens {
		t := &a.o.Tokens[i]
		if subtle.ConstantTimeCompare([]byte(secret), []byte(t.Secret)) == 1 && found == nil {
			found = t
		}
	}
	return found
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !a.hosts[strings.ToLower(r.Host)] {
		fail(w, http.StatusForbidden, "the Host header must name the admin address")
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		host, ok := strings.CutPrefix(o, "http://")
		if !ok || !a.hosts[strings.ToLower(host)] {
			fail(w, http.StatusForbidden, "cross-origin admin requests are refused")
			return
		}
	}
	path := r.URL.Path
	if path == "/healthz" {
		io.WriteString(w, "ok\n")
		return
	}
	if path == "/readyz" {
		ready(w, a.ctl)
		return
	}
	tok := a.token(r)
	if len(a.o.Tokens) > 0 || !a.loopback {
		if tok == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="limen-admin"`)
			fail(w, http.StatusUnauthorized, "an admin token is required")
			return
		}
	}
	write := r.Method == http.MethodPut || r.Method == http.MethodPost
	if write {
		if !a.canWrite {
			fail(w, http.StatusNotFound, "write endpoints are disabled: configure an admin token with scope: write")
			return
		}
		if tok == nil || tok.Scope != "write" {
			fail(w, http.StatusForbidden, "this endpoint needs a token with scope: write")
			return
		}
		ct := r.Header.Get("Content-Type")
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = ct[:i]
		}
		switch strings.TrimSpace(strings.ToLower(ct)) {
		case "application/json", "application/yaml", "application/x-yaml", "text/yaml":
		default:
			fail(w, http.StatusUnsupportedMediaType, "send the config as application/json or application/yaml")
			return
		}
	}
	switch {
	case path == "/admin/config" && r.Method == http.MethodGet:
		doc, hash := a.ctl.Config()
		w.Header().Set("ETag", `"`+hash+`"`)
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	case path == "/admin/config" && r.Method == http.MethodPut:
		a.put(w, r, tok)
	case path == "/admin/config/validate" && r.Method == http.MethodPost:
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		if err := a.ctl.Validate(body); err != nil {
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"valid": false, "errors": errorList(err)})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"valid": true})
	case path == "/admin/routes" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, a.ctl.Routes())
	case path == "/admin/upstreams" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, a.ctl.Upstreams())
	case path == "/admin/status" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, a.ctl.Status())
	case path == "/metrics" && r.Method == http.MethodGet:
		a.metrics.ServeHTTP(w, r)
	default:
		fail(w, http.StatusNotFound, "no such admin endpoint")
	}
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		fail(w, http.StatusRequestEntityTooLarge, "the config is larger than 16 MiB")
		return nil, false
	}
	return body, true
}

func (a *api) put(w http.ResponseWriter, r *http.Request, tok *Token) {
	match := r.Header.Get("If-Match")
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

func errorList(err error) []string {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range u.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}
