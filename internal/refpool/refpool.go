// Package refpool holds objects that outlive a config snapshot, shared by key and closed when
// their last holder lets go. It is the policy.Pool the runtime hands to policies and upstreams.
package refpool

import (
	"fmt"
	"io"
	"sort"
	"sync"
)

// Pool holds objects that outlive a snapshot, keyed by what they are (a target's health state by
// its address and check settings, a transport by its settings, a limiter by instance id), so a
// reload that keeps them keeps their state. Each Acquire takes a reference; the object is closed
// when its last holder releases it. It implements policy.Pool; the zero Pool is empty and ready.
type Pool struct {
	mu      sync.Mutex
	entries map[string]*poolEntry
}

type poolEntry struct {
	ready chan struct{} // closed once obj/err are set
	obj   any
	err   error
	refs  int
}

// Acquire returns the object under key, creating it with create when absent. create runs without
// the pool's lock held, so it may acquire other pooled objects; concurrent Acquires of the same key
// wait for the first one's create.
func (p *Pool) Acquire(key string, create func() (any, error)) (any, func(), error) {
	for {
		p.mu.Lock()
		if p.entries == nil {
			p.entries = map[string]*poolEntry{}
		}
		e, ok := p.entries[key]
		if ok {
			e.refs++
			p.mu.Unlock()
			<-e.ready
			if e.err != nil {
				p.drop(key, e)
				continue // the creator failed; try creating again
			}
			return e.obj, p.releaser(key, e), nil
		}
		e = &poolEntry{ready: make(chan struct{}), refs: 1}
		p.entries[key] = e
		p.mu.Unlock()

		obj, err := create()
		e.obj, e.err = obj, err
		if err != nil {
			p.mu.Lock()
			if p.entries[key] == e {
				delete(p.entries, key)
			}
			p.mu.Unlock()
			close(e.ready)
			return nil, nil, fmt.Errorf("create %s: %w", key, err)
		}
		close(e.ready)
		return obj, p.releaser(key, e), nil
	}
}

func (p *Pool) releaser(key string, e *poolEntry) func() {
	var once sync.Once
	return func() { once.Do(func() { p.drop(key, e) }) }
}

func (p *Pool) drop(key string, e *poolEntry) {
	p.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last && p.entries[key] == e {
		delete(p.entries, key)
	}
	p.mu.Unlock()
	if last && e.err == nil {
		if c, ok := e.obj.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// Len returns how many objects the pool holds.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}

// Keys lists the live keys, sorted; tests use it to check nothing leaks across reloads.
func (p *Pool) Keys() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([]string, 0, len(p.entries))
	for k := range p.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
