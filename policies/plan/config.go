package plan

import "fmt"

// Config is the configuration of the plan policy: it applies each consumer's usage plan (the
// top-level plans: and consumers[].plan) on the route: the plan's rate limits and its daily and
// monthly quotas, per consumer.
type Config struct {
	// DefaultPlan applies to consumers without a plan. Default: none (they are not limited,
	// unless missing_plan is deny).
	DefaultPlan string `json:"default_plan,omitempty"`
	// MissingPlan is what happens to a caller with no plan (no consumer, or a consumer without a
	// plan and no default_plan): allow (default) or deny (403 plan_required).
	MissingPlan string `json:"missing_plan,omitempty"`
	// Backend is local (default) or redis (counters shared by every node through state.redis).
	Backend string `json:"backend,omitempty"`
	// OnError is what a redis-backed plan does while Redis is unreachable: local (default),
	// allow or deny.
	OnError string `json:"on_error,omitempty"`
}

// Validate fills defaults and checks the enumerations.
func (c *Config) Validate() error {
	for _, f := range []struct {
		v       *string
		def     string
		allowed []string
		name    string
	}{
		{&c.MissingPlan, "allow", []string{"allow", "deny"}, "missing_plan"},
		{&c.Backend, "local", []string{"local", "redis"}, "backend"},
		{&c.OnError, "local", []string{"local", "allow", "deny"}, "on_error"},
	} {
		if *f.v == "" {
			*f.v = f.def
		}
		ok := false
		for _, a := range f.allowed {
			ok = ok || *f.v == a
		}
		if !ok {
			return fmt.Errorf("%s %q: want one of %v", f.name, *f.v, f.allowed)
		}
	}
	return nil
}
