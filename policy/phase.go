package policy

import (
	"fmt"
	"strings"
)

// Phase orders a route's chain: lower phases run first (outermost). Phases are spaced so new ones
// fit between without renumbering out-of-tree plugins.
type Phase int

// The standard phases, outermost first.
const (
	Edge      Phase = 100
	WAF       Phase = 200
	Authn     Phase = 300
	Authz     Phase = 400
	Limit     Phase = 500
	Validate  Phase = 600
	Transform Phase = 700
	Cache     Phase = 800
)

var phaseNames = []struct {
	name  string
	phase Phase
}{
	{"edge", Edge}, {"waf", WAF}, {"authn", Authn}, {"authz", Authz},
	{"limit", Limit}, {"validate", Validate}, {"transform", Transform}, {"cache", Cache},
}

// String returns the phase's config name ("authn"), or its number when it has no name.
func (p Phase) String() string {
	for _, n := range phaseNames {
		if n.phase == p {
			return n.name
		}
	}
	return fmt.Sprint(int(p))
}

// ParsePhase reads a phase name as written in config ("authn", case-insensitive).
func ParsePhase(s string) (Phase, error) {
	for _, n := range phaseNames {
		if strings.EqualFold(n.name, s) {
			return n.phase, nil
		}
	}
	return 0, fmt.Errorf("unknown phase %q (want one of edge, waf, authn, authz, limit, validate, transform, cache)", s)
}

// PhaseRange is a kind's default phase and the inclusive range an instance may move it to with
// `phase:` (for example an IP rate limit placed before authentication).
type PhaseRange struct {
	Default, Min, Max Phase
}

// At returns a range that allows only p.
func At(p Phase) PhaseRange { return PhaseRange{Default: p, Min: p, Max: p} }

// Contains reports whether p is within the range.
func (r PhaseRange) Contains(p Phase) bool { return p >= r.Min && p <= r.Max }
