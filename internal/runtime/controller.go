package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/limen-gateway/limen/internal/admin"
	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/upstream"
	"github.com/limen-gateway/limen/internal/usage"
)

// The runtime is the admin API's controller.
var _ admin.Controller = (*Runtime)(nil)

// Config returns the running config with secrets redacted, and its hash.
func (rt *Runtime) Config() ([]byte, string) {
	s := rt.current.Load()
	if s == nil {
		return []byte("{}"), ""
	}
	return s.Doc.Redacted(), s.Hash
}

// Validate parses and checks doc as a dry run.
func (rt *Runtime) Validate(doc []byte) error {
	d, err := rt.parsePushed(doc)
	if err != nil {
		return err
	}
	return Check(d)
}

// Apply validates a pushed config, writes it to the config file atomically (so the next file event
// does not silently revert it) and reloads. ifMatch must equal the running config's hash.
func (rt *Runtime) Apply(doc []byte, ifMatch, actor string) (string, error) {
	if cur := rt.current.Load(); cur == nil || cur.Hash != ifMatch {
		return "", fmt.Errorf("%w: the running config's hash is not %q", admin.ErrPreconditionFailed, ifMatch)
	}
	d, err := rt.parsePushed(doc)
	if err != nil {
		return "", err
	}
	if err := Check(d); err != nil {
		return "", err
	}
	target := rt.opts.Path
	if fi, err := os.Stat(target); err == nil && fi.IsDir() {
		return "", errors.New("the running config is a directory of files; push is supported for a single config file")
	}
	if err := writeFileAtomic(target, doc); err != nil {
		return "", fmt.Errorf("write config file: %w", err)
	}
	if err := rt.applyDoc(d, "admin:"+actor); err != nil {
		return "", err
	}
	return d.Hash, nil
}

// parsePushed parses a pushed document as if it were the config file, and keeps every file it
// references under the admin file root.
func (rt *Runtime) parsePushed(doc []byte) (*config.Document, error) {
	name := rt.opts.Path
	d, err := config.ParseAt(name, doc)
	if err != nil {
		return nil, err
	}
	root := filepath.Dir(name)
	if a := d.Config.Admin; a != nil && a.FileRoot != "" {
		root = a.FileRoot
	}
	if cur := rt.current.Load(); cur != nil && cur.Doc.Config.Admin != nil && cur.Doc.Config.Admin.FileRoot != "" {
		root = cur.Doc.Config.Admin.FileRoot // the running config decides, not the pushed one
	}
	root, _ = filepath.Abs(root)
	var errs config.Errors
	for _, f := range d.Files[1:] {
		rel, err := filepath.Rel(root, f)
		if err != nil || rel == ".." || len(rel) > 2 && rel[:3] == "../" {
			errs = append(errs, &config.FieldError{File: name, Msg: fmt.Sprintf("file %s is outside the admin file root %s", f, root)})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return d, nil
}

// RouteInfo is one route as GET /admin/routes shows it.
type RouteInfo struct {
	Name      string      `json:"name"`
	Listeners []string    `json:"listeners,omitempty"`
	Match     any         `json:"match"`
	Priority  int         `json:"priority,omitempty"`
	Chain     []ChainStep `json:"chain"`
	Terminal  string      `json:"terminal"`
}

// Routes lists the routes with their effective chains, in config order.
func (rt *Runtime) Routes() any {
	s := rt.current.Load()
	if s == nil {
		return []RouteInfo{}
	}
	return s.RouteInfos()
}

// RouteInfos describes the snapshot's routes.
func (s *Snapshot) RouteInfos() []RouteInfo {
	out := make([]RouteInfo, 0, len(s.routes))
	for _, r := range s.routes {
		chain := make([]ChainStep, len(r.Chain))
		copy(chain, r.Chain)
		for i, rep := range r.reporters {
			if rep != nil {
				chain[i].State = rep.Report()
			}
		}
		out = append(out, RouteInfo{Name: r.Name, Listeners: r.listeners, Match: r.Config.Match,
			Priority: r.Config.Priority, Chain: chain, Terminal: r.Terminal})
	}
	return out
}

// Upstreams lists the upstream pools with their targets' health.
func (rt *Runtime) Upstreams() any {
	s := rt.current.Load()
	out := []upstream.Status{}
	if s == nil {
		return out
	}
	names := make([]string, 0, len(s.upstreams))
	for n := range s.upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		st := s.upstreams[n].Status()
		if b := s.breakers[n]; b != nil {
			st.CircuitBreaker = b.Report()
		}
		out = append(out, st)
	}
	return out
}

// Status reports the config hash and the last reload's result.
func (rt *Runtime) Status() any {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	st := rt.status
	st.Ready = rt.ready.Load()
	return st
}

// Ready reports whether the gateway should receive traffic.
func (rt *Runtime) Ready() bool { return rt.ready.Load() }

// Usage reports metered usage (admin.Controller).
func (rt *Runtime) Usage(ctx context.Context, consumer string, from, to time.Time, groupBy []string) ([]usage.Row, error) {
	var s *Snapshot
	for { // a snapshot retired meanwhile is skipped for the one that replaced it
		if s = rt.current.Load(); s == nil {
			return nil, admin.ErrUsageOff
		}
		if s.enter() {
			break
		}
	}
	defer s.leave() // the meter stays open while the query reads it, even across a reload
	if s.usage == nil {
		return nil, admin.ErrUsageOff
	}
	totals, err := s.usage.Query(ctx, consumer, from, to)
	if err != nil {
		return nil, err
	}
	return usage.Group(totals, groupBy), nil
}
