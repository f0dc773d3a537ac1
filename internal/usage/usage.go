// Package usage meters requests per consumer for billing: per consumer, route, status class and
// hour, it counts requests and bytes in and out. Requests add to sharded in-memory tables (no
// lock shared by all requests); a flusher moves what was counted, in batches with ids, to the
// store (Redis for several nodes, or a local table on one node). A batch is applied at most once
// however often a flush is retried, so a Redis blip neither loses nor doubles counts; pending
// batches are bounded, and what has to be dropped is counted.
package usage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/maphash"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Key identifies one counter.
type Key struct {
	Consumer string
	Route    string
	Class    string // "2xx", "4xx", ...
	Hour     int64  // unix seconds of the hour's start, UTC
}

// Counts are what is metered.
type Counts struct {
	Requests int64 `json:"requests"`
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
}

func (c *Counts) add(o Counts) {
	c.Requests += o.Requests
	c.BytesIn += o.BytesIn
	c.BytesOut += o.BytesOut
}

// Batch is a flush: its ID makes applying it idempotent.
type Batch struct {
	ID    string
	Items map[Key]Counts
}

// Store keeps the totals.
type Store interface {
	// Apply adds a batch's counts once: a batch id seen before is skipped.
	Apply(ctx context.Context, b Batch) error
	// Query returns the totals of consumer ("" for all) in [from, to).
	Query(ctx context.Context, consumer string, from, to time.Time) (map[Key]Counts, error)
}

// Meter aggregates and flushes.
type Meter struct {
	seed   maphash.Seed
	shards [32]shard
	store  Store
	log    *slog.Logger

	every   time.Duration
	maxPend int // pending batches kept while the store fails

	mu      sync.Mutex // guards pending and the flush
	pending []Batch
	dropped atomic.Int64 // requests in batches dropped after the bound

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type shard struct {
	mu sync.Mutex
	m  map[Key]Counts
}

// Options configure a Meter.
type Options struct {
	Store         Store
	FlushInterval time.Duration // default 10s
	MaxPending    int           // batches kept while the store fails; default 360 (an hour at 10s)
	Log           *slog.Logger
}

// New starts a meter with its flusher.
func New(o Options) *Meter {
	if o.FlushInterval <= 0 {
		o.FlushInterval = 10 * time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 360
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	m := &Meter{seed: maphash.MakeSeed(), store: o.Store, log: o.Log, every: o.FlushInterval, maxPend: o.MaxPending,
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := range m.shards {
		m.shards[i].m = map[Key]Counts{}
	}
	go m.run()
	return m
}

// Record counts one request.
func (m *Meter) Record(consumer, route string, status int, bytesIn, bytesOut int64, at time.Time) {
	k := Key{Consumer: consumer, Route: route, Class: class(status), Hour: at.Unix() - at.Unix()%3600}
	s := &m.shards[maphash.String(m.seed, consumer)%uint64(len(m.shards))]
	s.mu.Lock()
	c := s.m[k]
	c.add(Counts{Requests: 1, BytesIn: bytesIn, BytesOut: bytesOut})
	s.m[k] = c
	s.mu.Unlock()
}

func class(status int) string {
	switch {
	case status >= 500:
		return "5xx"
	case status >= 400:
		return "4xx"
	case status >= 300:
		return "3xx"
	case status >= 200:
		return "2xx"
	}
	return "1xx"
}

func (m *Meter) run() {
	defer close(m.done)
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			m.Flush(context.Background())
		case <-m.stop:
			// Graceful shutdown: everything counted goes out, with a few retries.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			for range 5 {
				if m.Flush(ctx) == nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			cancel()
			return
		}
	}
}

// Flush cuts a batch from what was counted and applies every pending batch, oldest first. A
// failed batch stays pending, with its id, for the next flush.
func (m *Meter) Flush(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.cut(); len(b.Items) > 0 {
		m.pending = append(m.pending, b)
		for len(m.pending) > m.maxPend {
			var lost int64
			for _, c := range m.pending[0].Items {
				lost += c.Requests
			}
			m.dropped.Add(lost)
			m.log.Error("usage batches dropped: the store has been failing longer than the pending bound", "requests", lost)
			m.pending = m.pending[1:]
		}
	}
	for len(m.pending) > 0 {
		if err := m.store.Apply(ctx, m.pending[0]); err != nil {
			m.log.Warn("usage flush failed; will retry", "pending_batches", len(m.pending), "err", err)
			return err
		}
		m.pending = m.pending[1:]
	}
	return nil
}

// cut swaps every shard's table for an empty one and merges them into a batch.
func (m *Meter) cut() Batch {
	var id [16]byte
	_, _ = rand.Read(id[:])
	b := Batch{ID: hex.EncodeToString(id[:]), Items: map[Key]Counts{}}
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		t := s.m
		if len(t) > 0 {
			s.m = map[Key]Counts{}
		}
		s.mu.Unlock()
		for k, c := range t {
			cur := b.Items[k]
			cur.add(c)
			b.Items[k] = cur
		}
	}
	return b
}

// Dropped returns how many metered requests were lost to the pending bound.
func (m *Meter) Dropped() int64 { return m.dropped.Load() }

// Close flushes what is left and stops the flusher.
func (m *Meter) Close() error {
	m.once.Do(func() {
		close(m.stop)
		<-m.done
	})
	return nil
}

// Query reads totals from the store, first flushing what this node counted.
func (m *Meter) Query(ctx context.Context, consumer string, from, to time.Time) (map[Key]Counts, error) {
	_ = m.Flush(ctx)
	return m.store.Query(ctx, consumer, from, to)
}

// Row is one line of a usage report.
type Row struct {
	Consumer string `json:"consumer,omitempty"`
	Route    string `json:"route,omitempty"`
	Class    string `json:"status,omitempty"`
	Period   string `json:"period,omitempty"` // an hour or day start (RFC 3339) when grouped by time
	Counts
}

// Group sums totals by the named dimensions: consumer, route, status, hour, day.
func Group(totals map[Key]Counts, by []string) []Row {
	rows := map[Row]Counts{}
	for k, c := range totals {
		var r Row
		for _, g := range by {
			switch g {
			case "consumer":
				r.Consumer = k.Consumer
			case "route":
				r.Route = k.Route
			case "status":
				r.Class = k.Class
			case "hour":
				r.Period = time.Unix(k.Hour, 0).UTC().Format(time.RFC3339)
			case "day":
				r.Period = time.Unix(k.Hour-k.Hour%86400, 0).UTC().Format(time.RFC3339)
			}
		}
		cur := rows[r]
		cur.add(c)
		rows[r] = cur
	}
	out := make([]Row, 0, len(rows))
	for r, c := range rows {
		r.Counts = c
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Period != b.Period {
			return a.Period < b.Period
		}
		if a.Consumer != b.Consumer {
			return a.Consumer < b.Consumer
		}
		if a.Route != b.Route {
			return a.Route < b.Route
		}
		return a.Class < b.Class
	})
	return out
}
