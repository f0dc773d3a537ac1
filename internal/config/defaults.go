package config

import (
	"path/filepath"
	"time"
)

func setDur(d *Duration, v time.Duration) {
	if *d == 0 {
		*d = Duration(v)
	}
}

func setInt(i *int, v int) {
	if *i == 0 {
		*i = v
	}
}

func setStr(s *string, v string) {
	if *s == "" {
		*s = v
	}
}

// applyDefaults fills every unset field with the default its doc comment promises.
func applyDefaults(c *Config) {
	if len(c.Listeners) == 0 {
		c.Listeners = []Listener{{Name: "default", Addr: ":8080"}}
	}
	if c.State != nil && c.State.Redis != nil {
		r := c.State.Redis
		setDur(&r.Timeout, 100*time.Millisecond)
		setStr(&r.KeyPrefix, "limen:")
		setInt(&r.Failures, 3)
		setDur(&r.OpenFor, 2*time.Second)
	}
	if u := c.Usage; u != nil {
		setDur(&u.FlushInterval, 10*time.Second)
		setDur(&u.Retention, 840*time.Hour)
	}
	for _, u := range c.Upstreams {
		if u == nil || u.CircuitBreaker == nil {
			continue
		}
		b := u.CircuitBreaker
		if b.ConsecutiveFailures == 0 && b.FailureRatio == 0 {
			b.ConsecutiveFailures = 5
		}
		setInt(&b.MinRequests, 20)
		setInt(&b.HalfOpenRequests, 1)
		setDur(&b.Window, 10*time.Second)
		setDur(&b.OpenFor, 30*time.Second)
		if len(b.FailureStatuses) == 0 {
			b.FailureStatuses = []int{500, 502, 503, 504}
		}
	}
	ih := &c.Server.IdentityHeaders
	setStr(&ih.ConsumerID, "X-Consumer-ID")
	setStr(&ih.ConsumerGroups, "X-Consumer-Groups")
	setStr(&ih.ConsumerPlan, "X-Consumer-Plan")
	setStr(&ih.Credential, "X-Credential-Identifier")
	setStr(&ih.Anonymous, "X-Anonymous-Consumer")
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if len(l.Protocols) == 0 {
			l.Protocols = []string{"http1", "h2"}
		}
		setDur(&l.Timeouts.ReadHeader, 10*time.Second)
		setDur(&l.Timeouts.Idle, 120*time.Second)
		if l.MaxHeaderBytes == 0 {
			l.MaxHeaderBytes = 64 << 10
		}
		setStr(&l.ClientIP.Source, "peer")
		if l.TLS != nil {
			setStr(&l.TLS.MinVersion, "1.2")
		}
	}
	if c.Server.MergeSlashes == nil {
		t := true
		c.Server.MergeSlashes = &t
	}
	setStr(&c.Server.EscapedSlashes, "reject")
	setDur(&c.Server.Grace, 30*time.Second)
	setDur(&c.Server.DrainTimeout, 30*time.Second)
	if c.Admin != nil {
		setStr(&c.Admin.Addr, "127.0.0.1:9901")
	}
	for _, u := range c.Upstreams {
		if u == nil {
			continue
		}
		setStr(&u.Balance, "round_robin")
		switch u.Balance {
		case "hash":
			if u.HashBalanceFactor == 0 {
				u.HashBalanceFactor = 1.25
			}
		case "ewma":
			setDur(&u.EWMADecay, 10*time.Second)
		}
		setStr(&u.Protocol, "http1")
		for i := range u.Targets {
			setInt(&u.Targets[i].Weight, 1)
		}
		if d := u.Discovery; d != nil && d.DNS != nil {
			setStr(&d.DNS.Scheme, "http")
			setDur(&d.DNS.Refresh, 30*time.Second)
		}
		if a := u.Health.Active; a != nil {
			setStr(&a.Path, "/healthz")
			setDur(&a.Interval, 5*time.Second)
			setDur(&a.Timeout, time.Second)
			setInt(&a.HealthyAfter, 2)
			setInt(&a.UnhealthyAfter, 3)
		}
		if p := u.Health.Passive; p != nil {
			setInt(&p.ConsecutiveFailures, 5)
			setDur(&p.EjectFor, 30*time.Second)
			setInt(&p.MaxEjectionPercent, 50)
		}
		setDur(&u.Timeouts.Connect, 2*time.Second)
		setDur(&u.Timeouts.ResponseHeader, 15*time.Second)
		setDur(&u.Timeouts.Idle, 90*time.Second)
		if r := u.Retries; r != nil {
			if len(r.On) == 0 {
				r.On = []string{"connect_failure"}
			}
			if r.Budget == 0 {
				r.Budget = 20
			}
			setDur(&r.Backoff, 25*time.Millisecond)
			if r.MaxBody == 0 {
				r.MaxBody = 64 << 10
			}
		}
	}
	for _, r := range c.Routes {
		if r == nil {
			continue
		}
		setStr(&r.Match.Path, "/{path...}")
		setDur(&r.Timeout, 30*time.Second)
		setDur(&r.StreamIdleTimeout, 5*time.Minute)
		if r.Respond != nil {
			setInt(&r.Respond.Status, 200)
		}
	}
	setStr(&c.Logging.Level, "info")
	setStr(&c.Logging.Access.Format, "json")
	setStr(&c.Logging.Access.Output, "stdout")
	setInt(&c.Logging.Access.Buffer, 4096)
	setStr(&c.Logging.Audit.Output, "off")
	if c.Logging.Audit.PerSecond == 0 {
		c.Logging.Audit.PerSecond = 20
	}
}

// resolvePaths makes every referenced file absolute (relative to the config's directory) and
// records it in Files, so the source can watch it and the hash covers it.
func (d *Document) resolvePaths() {
	abs := func(p *string) {
		if *p == "" {
			return
		}
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(d.BaseDir, *p)
		}
		d.Files = append(d.Files, *p)
	}
	c := d.Config
	for i := range c.Listeners {
		if t := c.Listeners[i].TLS; t != nil {
			for j := range t.Certificates {
				abs(&t.Certificates[j].Cert)
				abs(&t.Certificates[j].Key)
				if ca := t.Certificates[j].ClientAuth; ca != nil {
					abs(&ca.CA)
				}
			}
			if ca := t.ClientAuth; ca != nil {
				abs(&ca.CA)
			}
		}
	}
	seen := map[string]bool{}
	for _, f := range d.policyFiles {
		if !filepath.IsAbs(f) {
			f = filepath.Join(d.BaseDir, f)
		}
		if !seen[f] {
			seen[f] = true
			d.Files = append(d.Files, f)
		}
	}
	for _, name := range sortedKeys(c.Upstreams) {
		if u := c.Upstreams[name]; u != nil && u.TLS != nil {
			t := u.TLS
			abs(&t.CA)
			abs(&t.Cert)
			abs(&t.Key)
		}
	}
	if out := c.Logging.Audit.Output; out != "stdout" && out != "stderr" && out != "off" && !filepath.IsAbs(out) {
		c.Logging.Audit.Output = filepath.Join(d.BaseDir, out)
	}
	if c.Logging.Access.Output != "stdout" && c.Logging.Access.Output != "stderr" && c.Logging.Access.Output != "off" {
		if !filepath.IsAbs(c.Logging.Access.Output) {
			c.Logging.Access.Output = filepath.Join(d.BaseDir, c.Logging.Access.Output)
		}
	}
	if c.Admin != nil && c.Admin.FileRoot != "" && !filepath.IsAbs(c.Admin.FileRoot) {
		c.Admin.FileRoot = filepath.Join(d.BaseDir, c.Admin.FileRoot)
	}
}
