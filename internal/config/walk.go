package config

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/limen-gateway/limen/policy"
)

// walker turns a YAML node tree into plain JSON-able values while checking it against the Go
// types: unknown keys and type errors are reported with file, line and path, which a plain
// json.Unmarshal cannot do.
type walker struct {
	file  string
	doc   *Document
	errs  Errors
	nodes int
}

// maxNodes bounds alias expansion (a "billion laughs" document).
const maxNodes = 1_000_000

var (
	rawType     = reflect.TypeFor[json.RawMessage]()
	policyType  = reflect.TypeFor[PolicySpec]()
	unmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, &FieldError{File: w.file, Line: n.Line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (w *walker) mark(path string, n *yaml.Node) {
	if _, ok := w.doc.positions[path]; !ok {
		w.doc.positions[path] = pos{file: w.file, line: n.Line}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// value converts n, expected to decode into t, checking it on the way.
func (w *walker) value(n *yaml.Node, t reflect.Type, path string) any {
	w.nodes++
	if w.nodes > maxNodes {
		if w.nodes == maxNodes+1 {
			w.fail(n, path, "document too large after alias expansion")
		}
		return nil
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return map[string]any{}
		}
		return w.value(n.Content[0], t, path)
	case yaml.AliasNode:
		return w.value(n.Alias, t, path)
	}
	w.mark(path, n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == rawType:
		return w.generic(n, path)
	case t == policyType:
		return w.policySpec(n, path)
	case reflect.PointerTo(t).Implements(unmarshaler):
		v := w.generic(n, path)
		raw, _ := json.Marshal(v)
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			w.fail(n, path, "%v", err)
			return nil
		}
		return v
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "want a mapping (key: value), got %s", describe(n))
			return nil
		}
		fields := jsonFields(t)
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				w.errs = append(w.errs, &FieldError{File: w.file, Line: k.Line, Path: join(path, k.Value),
					Msg: fmt.Sprintf("unknown field %q%s", k.Value, suggest(k.Value, fields))})
				continue
			}
			if _, dup := out[k.Value]; dup {
				w.fail(k, join(path, k.Value), "defined twice")
				continue
			}
			w.mark(join(path, k.Value), k)
			val := w.value(v, f.Type, join(path, k.Value))
			if val == nil {
				continue // null or invalid: leave the field unset (errors were recorded)
			}
			switch f.Tag.Get("env") {
			case "true":
				val = w.expandEnv(v, join(path, k.Value), val)
			case "only":
				// A secret that must not sit in the file: only a ${NAME} reference is accepted.
				if s, ok := val.(string); ok && !strings.HasPrefix(strings.TrimSpace(s), "${") {
					w.fail(v, join(path, k.Value), "a plain secret is not accepted in the config; reference an environment variable (\"${NAME}\") or store a digest instead")
					continue
				}
				val = w.expandEnv(v, join(path, k.Value), val)
			}
			out[k.Value] = val
		}
		return out
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "want a mapping (key: value), got %s", describe(n))
			return nil
		}
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if _, dup := out[k.Value]; dup {
				w.fail(k, join(path, k.Value), "defined twice")
				continue
			}
			w.mark(join(path, k.Value), k)
			out[k.Value] = w.value(v, t.Elem(), join(path, k.Value))
		}
		return out
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "want a list, got %s", describe(n))
			return nil
		}
		out := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			out = append(out, w.value(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)))
		}
		return out
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.fail(n, path, "want a string, got %s", describe(n))
			return nil
		}
		return n.Value
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			w.fail(n, path, "want true or false, got %s", describe(n))
			return nil
		}
		return b
	case reflect.Int, reflect.Int64, reflect.Int32:
		i, err := strconv.ParseInt(n.Value, 10, 64)
		if n.Kind != yaml.ScalarNode || err != nil || n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			w.fail(n, path, "want an integer, got %s", describe(n))
			return nil
		}
		return i
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || err != nil {
			w.fail(n, path, "want a number, got %s", describe(n))
			return nil
		}
		return f
	case reflect.Interface:
		return w.generic(n, path)
	}
	w.fail(n, path, "unsupported value")
	return nil
}

// generic converts a node into plain values without a target type (policy configs).
func (w *walker) generic(n *yaml.Node, path string) any {
	w.nodes++
	if w.nodes > maxNodes {
		return nil
	}
	switch n.Kind {
	case yaml.AliasNode:
		return w.generic(n.Alias, path)
	case yaml.MappingNode:
		out := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if _, dup := out[k.Value]; dup {
				w.fail(k, join(path, k.Value), "defined twice")
				continue
			}
			w.mark(join(path, k.Value), k)
			out[k.Value] = w.generic(n.Content[i+1], join(path, k.Value))
		}
		return out
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			out = append(out, w.generic(c, fmt.Sprintf("%s[%d]", path, i)))
		}
		return out
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			w.fail(n, path, "%v", err)
			return nil
		}
		switch x := v.(type) {
		case int:
			return int64(x)
		case uint64, int64, float64, bool, string, nil:
			return x
		default:
			return n.Value // timestamps and other YAML types stay as written
		}
	}
	return nil
}

// policySpec reads `{use: name}` or `{<kind>: {...}, phase: x, id: y}`.
func (w *walker) policySpec(n *yaml.Node, path string) any {
	if n.Kind != yaml.MappingNode {
		w.fail(n, path, "want a policy: {use: name} or {<kind>: {...}}")
		return nil
	}
	out := map[string]any{}
	var kinds []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "use", "phase", "id":
			if v.Kind != yaml.ScalarNode {
				w.fail(v, join(path, k.Value), "want a string")
				continue
			}
			out[k.Value] = v.Value
		default:
			kinds = append(kinds, k.Value)
			kp := join(path, k.Value)
			w.mark(kp, k)
			kind, ok := policy.Lookup(k.Value)
			if !ok {
				w.errs = append(w.errs, &FieldError{File: w.file, Line: k.Line, Path: kp,
					Msg: fmt.Sprintf("unknown policy kind %q (known: %s)", k.Value, strings.Join(policy.Kinds(), ", "))})
				continue
			}
			val := w.generic(v, kp)
			raw, _ := json.Marshal(val)
			if err := kind.Check(raw); err != nil {
				w.fail(k, kp, "%s", strings.TrimPrefix(err.Error(), "json: "))
			} else if kind.Files != nil {
				w.doc.policyFiles = append(w.doc.policyFiles, kind.Files(raw)...)
			}
			out["kind"], out["config"] = k.Value, json.RawMessage(raw)
		}
	}
	_, use := out["use"]
	switch {
	case use && len(kinds) > 0:
		w.fail(n, path, "a policy entry is either `use: <name>` or an inline kind, not both")
	case !use && len(kinds) == 0:
		w.fail(n, path, "a policy entry needs `use: <name>` or one kind (known: %s)", strings.Join(policy.Kinds(), ", "))
	case len(kinds) > 1:
		w.fail(n, path, "one policy per entry; found %s", strings.Join(kinds, ", "))
	}
	if use {
		if _, ok := out["phase"]; ok {
			w.fail(n, join(path, "phase"), "phase belongs on the shared instance under top-level policies")
		}
	}
	return out
}

// expandEnv replaces ${NAME} in a field that allows it; an unset or empty variable is an error.
func (w *walker) expandEnv(n *yaml.Node, path string, v any) any {
	s, ok := v.(string)
	if !ok || !strings.Contains(s, "${") {
		return v
	}
	var bad []string
	out := os.Expand(s, func(name string) string {
		val := os.Getenv(name)
		if val == "" {
			bad = append(bad, name)
		}
		return val
	})
	if len(bad) > 0 {
		w.fail(n, path, "environment variable %s is empty or unset", strings.Join(bad, ", "))
	}
	return out
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f
	}
	return out
}

// suggest proposes the closest known field for a typo.
func suggest(key string, fields map[string]reflect.StructField) string {
	best, bestD := "", 3
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if d := distance(key, n); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// MarshalJSON writes the spec in its internal form.
func (p PolicySpec) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if p.Use != "" {
		m["use"] = p.Use
	}
	if p.Kind != "" {
		m["kind"] = p.Kind
		m["config"] = p.Config
	}
	if p.Phase != "" {
		m["phase"] = p.Phase
	}
	if p.ID != "" {
		m["id"] = p.ID
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads the internal form the walker produced.
func (p *PolicySpec) UnmarshalJSON(b []byte) error {
	var m struct {
		Use    string          `json:"use"`
		Kind   string          `json:"kind"`
		Config json.RawMessage `json:"config"`
		Phase  string          `json:"phase"`
		ID     string          `json:"id"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*p = PolicySpec{Use: m.Use, Kind: m.Kind, Config: m.Config, Phase: m.Phase, ID: m.ID}
	return nil
}
