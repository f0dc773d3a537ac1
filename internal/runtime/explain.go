package runtime

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/internal/refpool"
	"github.com/limen-gateway/limen/policy"
)

// Explain prints every route with its effective chain in order and, when method and rawURL are
// given, which route each listener would send that request to, after the same path and host
// normalization the server applies.
func Explain(doc *config.Document, w io.Writer, method, rawURL string) error {
	s, err := compile(doc, &refpool.Pool{}, nil, slog.New(slog.DiscardHandler), true)
	if err != nil {
		return err
	}
	defer s.close()

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tLISTENERS\tMATCH\tCHAIN (in order)\tTERMINAL")
	for _, r := range s.routes {
		ls := "all"
		if len(r.listeners) > 0 {
			ls = strings.Join(r.listeners, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, ls, describeMatch(r.Config), describeChain(r.Chain), r.Terminal)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if method == "" {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("explain: want an absolute URL such as http://api.example.com/users/1, got %q", rawURL)
	}
	opts := httpx.PathOptions{
		MergeSlashes:       doc.Config.Server.MergeSlashes == nil || *doc.Config.Server.MergeSlashes,
		KeepEscapedSlashes: doc.Config.Server.EscapedSlashes == "keep",
	}
	raw := u.EscapedPath()
	if raw == "" {
		raw = "/"
	}
	path, err := httpx.NormalizePath(raw, opts)
	if err != nil {
		fmt.Fprintf(w, "\n%s %s -> 400 (%v)\n", method, rawURL, err)
		return nil
	}
	host, err := httpx.NormalizeHost(u.Host)
	if err != nil {
		fmt.Fprintf(w, "\n%s %s -> 400 (%v)\n", method, rawURL, err)
		return nil
	}
	fmt.Fprintf(w, "\n%s %s (normalized host %q, path %q)\n", strings.ToUpper(method), rawURL, host, path)
	for _, l := range doc.Config.Listeners {
		r := &http.Request{Method: strings.ToUpper(method), Header: http.Header{},
			URL: &url.URL{Host: host, Path: httpx.UnescapePath(path), RawPath: path, RawQuery: u.RawQuery}}
		ex := &policy.Exchange{Listener: l.Name}
		route, rerr := s.route(ex, r)
		switch {
		case rerr != nil:
			fmt.Fprintf(w, "  listener %s: %v\n", l.Name, rerr)
		default:
			fmt.Fprintf(w, "  listener %s: route %s", l.Name, route.Name)
			if len(ex.Params) > 0 {
				parts := make([]string, len(ex.Params))
				for i, p := range ex.Params {
					parts[i] = p.Name + "=" + p.Value
				}
				fmt.Fprintf(w, " (%s)", strings.Join(parts, ", "))
			}
			fmt.Fprintf(w, " -> %s -> %s\n", describeChain(route.Chain), route.Terminal)
		}
	}
	return nil
}

func describeMatch(r *config.Route) string {
	var parts []string
	if len(r.Match.Hosts) > 0 {
		parts = append(parts, "hosts="+strings.Join(r.Match.Hosts, ","))
	}
	parts = append(parts, "path="+r.Match.Path)
	if len(r.Match.Methods) > 0 {
		parts = append(parts, "methods="+strings.Join(r.Match.Methods, ","))
	}
	for k, v := range r.Match.Headers {
		parts = append(parts, "header:"+k+"="+v)
	}
	for k, v := range r.Match.Query {
		parts = append(parts, "query:"+k+"="+v)
	}
	if r.Priority != 0 {
		parts = append(parts, fmt.Sprintf("priority=%d", r.Priority))
	}
	return strings.Join(parts, " ")
}

func describeChain(c []ChainStep) string {
	if len(c) == 0 {
		return "-"
	}
	parts := make([]string, len(c))
	for i, s := range c {
		parts[i] = fmt.Sprintf("%s[%s@%s]", s.ID, s.Kind, s.Phase)
	}
	return strings.Join(parts, " > ")
}
