package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
)

// Kind is a registered policy kind.
type Kind struct {
	Name   string
	Phases PhaseRange
	// Build decodes raw strictly (unknown fields are errors), validates it and provisions an
	// instance. A nil or empty raw decodes as an empty config.
	Build func(bc BuildContext, raw json.RawMessage) (Policy, error)
	// Check decodes and validates raw without provisioning anything; config validation uses it.
	Check func(raw json.RawMessage) error
	// Files lists the File fields of a valid raw config (as written, possibly relative), so the
	// config loader can watch them and hash their contents.
	Files func(raw json.RawMessage) []string
}

// Validator is implemented by config types that check themselves after decoding.
type Validator interface{ Validate() error }

var (
	registryMu sync.RWMutex
	registry   = map[string]*Kind{}
)

// Register adds a policy kind with its default phase and the phases an instance may move it to.
// The config is decoded strictly (unknown fields are errors) into a new C; C.Validate() runs if C
// implements Validator; then build provisions the instance. Register panics on a duplicate kind or
// an invalid range: both are programming errors caught at start-up.
func Register[C any](kind string, phases PhaseRange, build func(BuildContext, *C) (Policy, error)) {
	if kind == "" || build == nil {
		panic("policy: Register needs a kind and a build function")
	}
	if phases.Min > phases.Max || !phases.Contains(phases.Default) {
		panic(fmt.Sprintf("policy: kind %q: default phase %v is outside [%v, %v]", kind, phases.Default, phases.Min, phases.Max))
	}
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[kind]; dup {
		panic(fmt.Sprintf("policy: kind %q registered twice", kind))
	}
	registry[kind] = &Kind{
		Name:   kind,
		Phases: phases,
		Check: func(raw json.RawMessage) error {
			_, err := decode[C](raw)
			return err
		},
		Files: func(raw json.RawMessage) []string {
			c, err := decode[C](raw)
			if err != nil {
				return nil
			}
			return filesOf(reflect.ValueOf(c), nil)
		},
		Build: func(bc BuildContext, raw json.RawMessage) (Policy, error) {
			c, err := decode[C](raw)
			if err != nil {
				return nil, err
			}
			return build(bc, c)
		},
	}
}

func decode[C any](raw json.RawMessage) (*C, error) {
	c := new(C)
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			return nil, err
		}
		if dec.More() {
			return nil, fmt.Errorf("unexpected data after the policy config")
		}
	}
	if v, ok := any(c).(Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Lookup returns the registered kind named kind.
func Lookup(kind string) (*Kind, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	k, ok := registry[kind]
	return k, ok
}

// Kinds returns the names of all registered kinds, sorted.
func Kinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
