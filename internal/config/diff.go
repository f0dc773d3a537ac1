package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
)

// Diff lists the named objects that differ between two configs, for the audit trail:
// "routes/users: changed", "consumers/acme: added", "upstreams/old: removed", and one entry per
// changed top-level section without names ("server: changed"). Secrets are compared, never shown.
func Diff(old, new *Config) []string {
	if old == nil {
		old = &Config{}
	}
	if new == nil {
		new = &Config{}
	}
	var out []string
	named := func(section string, a, b map[string]any) {
		for _, k := range sortedKeys(b) {
			if prev, ok := a[k]; !ok {
				out = append(out, fmt.Sprintf("%s/%s: added", section, k))
			} else if !sameJSON(prev, b[k]) {
				out = append(out, fmt.Sprintf("%s/%s: changed", section, k))
			}
		}
		for _, k := range sortedKeys(a) {
			if _, ok := b[k]; !ok {
				out = append(out, fmt.Sprintf("%s/%s: removed", section, k))
			}
		}
	}
	byName := func(n int, name func(int) string, item func(int) any) map[string]any {
		m := make(map[string]any, n)
		for i := range n {
			m[name(i)] = item(i)
		}
		return m
	}
	named("listeners",
		byName(len(old.Listeners), func(i int) string { return old.Listeners[i].Name }, func(i int) any { return old.Listeners[i] }),
		byName(len(new.Listeners), func(i int) string { return new.Listeners[i].Name }, func(i int) any { return new.Listeners[i] }))
	named("upstreams", anyMap(old.Upstreams), anyMap(new.Upstreams))
	named("policies", anyMap(old.Policies), anyMap(new.Policies))
	routeName := func(rs []*Route) func(int) string {
		return func(i int) string {
			if rs[i] == nil {
				return fmt.Sprintf("#%d", i)
			}
			return rs[i].Name
		}
	}
	named("routes",
		byName(len(old.Routes), routeName(old.Routes), func(i int) any { return old.Routes[i] }),
		byName(len(new.Routes), routeName(new.Routes), func(i int) any { return new.Routes[i] }))
	consumerName := func(cs []*Consumer) func(int) string {
		return func(i int) string {
			if cs[i] == nil {
				return fmt.Sprintf("#%d", i)
			}
			return cs[i].Name
		}
	}
	named("consumers",
		byName(len(old.Consumers), consumerName(old.Consumers), func(i int) any { return old.Consumers[i] }),
		byName(len(new.Consumers), consumerName(new.Consumers), func(i int) any { return new.Consumers[i] }))
	for _, s := range []struct {
		name string
		a, b any
	}{{"server", old.Server, new.Server}, {"admin", old.Admin, new.Admin}, {"ops", old.Ops, new.Ops}, {"logging", old.Logging, new.Logging}} {
		if !sameJSON(s.a, s.b) {
			out = append(out, s.name+": changed")
		}
	}
	sort.Strings(out)
	return out
}

func anyMap[V any](m map[string]V) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sameJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
