package runtime

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/router"
	"github.com/limen-gateway/limen/policy"
)

// respond is the fixed-response terminal. Headers and body are prepared once at build time.
type respond struct {
	status int
	header http.Header
	body   []byte
}

func newRespond(c *config.Respond) policy.Handler {
	r := &respond{status: c.Status, header: http.Header{}, body: []byte(c.Body)}
	if r.status == 0 {
		r.status = http.StatusOK
	}
	for k, v := range c.Headers {
		r.header.Set(k, v)
	}
	if r.header.Get("Content-Type") == "" && len(r.body) > 0 {
		r.header.Set("Content-Type", "text/plain; charset=utf-8")
	}
	r.header.Set("Content-Length", strconv.Itoa(len(r.body)))
	return r
}

func (t *respond) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	for k, v := range t.header {
		h[k] = v
	}
	w.WriteHeader(t.status)
	if r.Method != http.MethodHead && t.status != http.StatusNoContent && t.status != http.StatusNotModified {
		_, _ = w.Write(t.body)
	}
	return nil
}

// pathRewriter returns the function the proxy applies to the normalized escaped path. A path
// template wins; otherwise strip_prefix then add_prefix. Prefixes act on segment boundaries only.
func pathRewriter(rw *config.Rewrite) (func(string, policy.Params) string, error) {
	if rw.Path != "" {
		tpl, err := router.ParseTemplate(rw.Path)
		if err != nil {
			return nil, err
		}
		return func(_ string, ps policy.Params) string { return string(tpl.Expand(nil, ps)) }, nil
	}
	if rw.StripPrefix == "" && rw.AddPrefix == "" {
		return nil, nil
	}
	strip := strings.TrimSuffix(rw.StripPrefix, "/")
	add := strings.TrimSuffix(rw.AddPrefix, "/")
	return func(p string, _ policy.Params) string {
		if strip != "" {
			if rest, ok := cutSegmentPrefix(p, strip); ok {
				p = rest
			}
		}
		if add != "" {
			if p == "/" {
				return add + "/"
			}
			return add + p
		}
		return p
	}, nil
}

// cutSegmentPrefix removes prefix from p when it ends on a segment boundary: "/api" is cut from
// "/api" and "/api/x", never from "/apix".
func cutSegmentPrefix(p, prefix string) (string, bool) {
	if !strings.HasPrefix(p, prefix) {
		return p, false
	}
	rest := p[len(prefix):]
	switch {
	case rest == "":
		return "/", true
	case rest[0] == '/':
		return rest, true
	}
	return p, false
}
