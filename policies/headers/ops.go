package headers

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"sort"

	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/internal/placeholder"
)

// op is one compiled operation on one header.
type op struct {
	name string
	tmpl *placeholder.Template
	// constant is the value of a constant template as a one-element slice with no spare
	// capacity: it is shared by every request, so an append by anyone copies it first.
	constant []string
}

// ops are a config's compiled operations, each list sorted by name for a stable order.
type ops struct {
	remove   []string
	set, add []op
	dynamic  int // how many set and add templates depend on the request
}

func (c *Config) compile() (*ops, error) {
	if len(c.Set) == 0 && len(c.Add) == 0 && len(c.Remove) == 0 {
		return nil, errors.New("nothing to do: give at least one of set, add or remove")
	}
	o := &ops{}
	var errs []error
	removed := map[string]bool{}
	for i, n := range c.Remove {
		if !httpx.ValidToken(n) {
			errs = append(errs, fmt.Errorf("remove[%d]: %q is not a valid header name", i, n))
			continue
		}
		cn := textproto.CanonicalMIMEHeaderKey(n)
		if cn == "Host" {
			errs = append(errs, fmt.Errorf("remove[%d]: Host %s", i, forbidden["Host"]))
			continue
		}
		if removed[cn] {
			errs = append(errs, fmt.Errorf("remove[%d]: %s is listed twice", i, cn))
			continue
		}
		removed[cn] = true
		o.remove = append(o.remove, cn)
	}
	sort.Strings(o.remove)
	compileMap := func(key string, m map[string]string) []op {
		var list []op
		seen := map[string]string{}
		for _, n := range sortedKeys(m) {
			if !httpx.ValidToken(n) {
				errs = append(errs, fmt.Errorf("%s: %q is not a valid header name", key, n))
				continue
			}
			cn := textproto.CanonicalMIMEHeaderKey(n)
			if why, bad := forbidden[cn]; bad {
				errs = append(errs, fmt.Errorf("%s: %s %s", key, cn, why))
				continue
			}
			if prev, dup := seen[cn]; dup {
				errs = append(errs, fmt.Errorf("%s: %q and %q name the same header", key, prev, n))
				continue
			}
			seen[cn] = n
			if removed[cn] {
				errs = append(errs, fmt.Errorf("%s: %s is also listed in remove; remove runs first, so drop one of them", key, cn))
				continue
			}
			t, err := placeholder.Compile(m[n])
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: %w", key, n, err))
				continue
			}
			x := op{name: cn, tmpl: t}
			if t.IsConst() && t.Value() != "" {
				x.constant = []string{t.Value()}[:1:1]
			}
			list = append(list, x)
		}
		return list
	}
	o.set = compileMap("set", c.Set)
	o.add = compileMap("add", c.Add)
	for _, list := range [2][]op{o.set, o.add} {
		for _, x := range list {
			if x.constant == nil {
				o.dynamic++
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return o, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// apply runs the operations on h, rendering templates against r. All dynamic values of one
// request are rendered into one buffer and converted to one string, and their header slices are
// carved from one array, so a request costs two allocations however many templates there are.
func (o *ops) apply(h http.Header, r *http.Request) {
	for _, n := range o.remove {
		delete(h, n)
	}
	var (
		s    string
		vals []string
		ends [16]int
	)
	if o.dynamic > 0 {
		var arr [512]byte
		buf := arr[:0]
		var endList []int
		if o.dynamic <= len(ends) {
			endList = ends[:0]
		} else {
			endList = make([]int, 0, o.dynamic)
		}
		for _, list := range [2][]op{o.set, o.add} {
			for i := range list {
				if list[i].constant == nil {
					buf = list[i].tmpl.Render(buf, r)
					endList = append(endList, len(buf))
				}
			}
		}
		s = string(buf)
		vals = make([]string, o.dynamic)
		start := 0
		for i, end := range endList {
			vals[i] = s[start:end]
			start = end
		}
	}
	d := 0
	for i := range o.set {
		op := &o.set[i]
		if op.constant != nil {
			h[op.name] = op.constant
			continue
		}
		if v := vals[d : d+1 : d+1]; v[0] != "" {
			h[op.name] = v
		} else {
			delete(h, op.name)
		}
		d++
	}
	for i := range o.add {
		op := &o.add[i]
		v := op.constant
		if v == nil {
			v = vals[d : d+1 : d+1]
			d++
			if v[0] == "" {
				continue
			}
		}
		if old, ok := h[op.name]; ok {
			h[op.name] = append(old, v[0])
		} else {
			h[op.name] = v
		}
	}
}
