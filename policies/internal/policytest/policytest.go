// Package policytest holds what the tests of every policy package share: building an instance the
// way runtime does (through the registry, so registration and strict decoding are exercised),
// serving it with an Exchange in the context, and checking that the YAML examples in a kind's
// reference page still build, so the docs cannot rot.
package policytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/limen-gateway/limen/internal/refpool"
	"github.com/limen-gateway/limen/policy"
)

// Build builds an instance of kind from raw JSON through the registry, as runtime does.
func Build(kind, raw string, opts ...func(*policy.BuildContext)) (policy.Policy, error) {
	k, ok := policy.Lookup(kind)
	if !ok {
		return nil, fmt.Errorf("kind %q is not registered", kind)
	}
	bc := policy.BuildContext{ID: "routes/test/" + kind + "#0", Kind: kind, Route: "test"}
	for _, o := range opts {
		o(&bc)
	}
	return k.Build(bc, json.RawMessage(raw))
}

// MustBuild is Build for configs a test expects to be valid.
func MustBuild(tb testing.TB, kind, raw string, opts ...func(*policy.BuildContext)) policy.Policy {
	tb.Helper()
	p, err := Build(kind, raw, opts...)
	if err != nil {
		tb.Fatalf("build %s %s: %v", kind, raw, err)
	}
	return p
}

// Result is what Serve observed.
type Result struct {
	// Rec is the recorded response (what the policy or next wrote; errors are not rendered).
	Rec *httptest.ResponseRecorder
	// Err is what the wrapped handler returned.
	Err error
	// Reached reports whether next was called, and Seen is the request next saw.
	Reached bool
	Seen    *http.Request
}

// Serve runs r through p wrapped around next (a 200 "ok" terminal when nil), with ex in the
// context when r has none.
func Serve(p policy.Policy, r *http.Request, ex *policy.Exchange, next policy.HandlerFunc) Result {
	var res Result
	h := p.Wrap(policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res.Reached = true
		res.Seen = r
		if next != nil {
			return next(w, r)
		}
		_, err := w.Write([]byte("ok"))
		return err
	}))
	if ex == nil {
		ex = &policy.Exchange{}
	}
	if policy.ExchangeFrom(r.Context()) == nil {
		r = r.WithContext(policy.WithExchange(r.Context(), ex))
	}
	res.Rec = httptest.NewRecorder()
	res.Err = h.ServeHTTP(res.Rec, r)
	return res
}

// PolicyError returns err as a *policy.Error, or nil.
func PolicyError(err error) *policy.Error {
	var pe *policy.Error
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// YAMLBlocks returns the contents of the ```yaml fenced blocks in the Markdown file at path.
func YAMLBlocks(tb testing.TB, path string) []string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var blocks []string
	var cur *strings.Builder
	for line := range strings.Lines(string(b)) {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && trimmed == "```yaml":
			cur = new(strings.Builder)
		case cur != nil && trimmed == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line)
		}
	}
	if cur != nil {
		tb.Fatalf("%s: unterminated ```yaml block", path)
	}
	return blocks
}

// CheckDocExamples decodes every ```yaml block of the reference page at path, which must hold a
// `policies:` list in the route form, and builds every entry of kind through the registry. It
// fails when the page has no example of kind, so a page cannot quietly lose its examples.
// Entries whose value is invalid on purpose are marked by a comment line "# invalid" in the block.
// opts adjust the BuildContext (consumers, a pool) for kinds that need them.
func CheckDocExamples(t *testing.T, path, kind string, opts ...func(*policy.BuildContext)) {
	t.Helper()
	checkDocExamples(t, path, kind, func(raw string) error { _, err := Build(kind, raw, opts...); return err })
}

// CheckDocHasExamples checks that the reference page at path parses and has an example of kind,
// without building it (the kind's own tests build its examples with the context they need).
func CheckDocHasExamples(t *testing.T, path, kind string) {
	t.Helper()
	checkDocExamples(t, path, kind, nil)
}

func checkDocExamples(t *testing.T, path, kind string, build func(raw string) error) {
	t.Helper()
	n := 0
	for i, block := range YAMLBlocks(t, path) {
		var top map[string]any
		if err := yaml.Unmarshal([]byte(block), &top); err != nil {
			t.Errorf("%s: yaml block %d: %v", path, i+1, err)
			continue
		}
		if _, ok := top["policies"]; !ok {
			continue // another part of the config (consumers:), shown for context
		}
		var doc struct {
			Policies []map[string]any `yaml:"policies"`
		}
		dec := yaml.NewDecoder(bytes.NewReader([]byte(block)))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil {
			t.Errorf("%s: yaml block %d: %v", path, i+1, err)
			continue
		}
		wantErr := strings.Contains(block, "# invalid")
		if build == nil {
			for _, entry := range doc.Policies {
				if _, ok := entry[kind]; ok {
					n++
				}
			}
			continue
		}
		for j, entry := range doc.Policies {
			v, ok := entry[kind]
			if !ok {
				continue
			}
			for key := range entry {
				if key != kind && key != "phase" && key != "id" {
					t.Errorf("%s: yaml block %d entry %d: unexpected key %q beside %q", path, i+1, j+1, key, kind)
				}
			}
			if ph, ok := entry["phase"].(string); ok {
				k, _ := policy.Lookup(kind)
				p, err := policy.ParsePhase(ph)
				if err != nil || !k.Phases.Contains(p) {
					t.Errorf("%s: yaml block %d entry %d: phase %q is not allowed for %s", path, i+1, j+1, ph, kind)
				}
			}
			raw, err := json.Marshal(v)
			if err != nil {
				t.Errorf("%s: yaml block %d entry %d: %v", path, i+1, j+1, err)
				continue
			}
			n++
			err = build(string(raw))
			switch {
			case wantErr && err == nil:
				t.Errorf("%s: yaml block %d entry %d is marked invalid but builds: %s", path, i+1, j+1, raw)
			case !wantErr && err != nil:
				t.Errorf("%s: yaml block %d entry %d: %v (config %s)", path, i+1, j+1, err, raw)
			}
		}
	}
	if n == 0 {
		t.Errorf("%s has no yaml example of %s", path, kind)
	}
}

// Pool is the runtime's policy.Pool, for tests: objects are shared by key and closed when the
// last holder releases them.
type Pool = refpool.Pool

// WarnCounter is a slog.Handler that counts warnings, for tests that check a failure is logged
// once (or not at all).
type WarnCounter struct{ warns atomic.Int64 }

// Warns returns how many warnings were logged.
func (h *WarnCounter) Warns() int64 { return h.warns.Load() }

// Enabled implements slog.Handler.
func (h *WarnCounter) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (h *WarnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.warns.Add(1)
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (h *WarnCounter) WithAttrs([]slog.Attr) slog.Handler { return h }

// WithGroup implements slog.Handler.
func (h *WarnCounter) WithGroup(string) slog.Handler { return h }
