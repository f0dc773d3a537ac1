package usage

import (
	"context"
	"sync"
	"time"
)

// MemoryStore keeps totals in this process: one node, nothing to run. Batch ids are remembered
// for a day, like the Redis store's.
type MemoryStore struct {
	mu      sync.Mutex
	totals  map[Key]Counts
	applied map[string]time.Time
	keep    time.Duration // totals older than this are forgotten
}

// NewMemoryStore keeps totals for retention (default 35 days).
func NewMemoryStore(retention time.Duration) *MemoryStore {
	if retention <= 0 {
		retention = 35 * 24 * time.Hour
	}
	return &MemoryStore{totals: map[Key]Counts{}, applied: map[string]time.Time{}, keep: retention}
}

// Apply adds b once.
func (s *MemoryStore) Apply(_ context.Context, b Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if _, seen := s.applied[b.ID]; seen {
		return nil
	}
	s.applied[b.ID] = now
	for k, c := range b.Items {
		cur := s.totals[k]
		cur.add(c)
		s.totals[k] = cur
	}
	for id, at := range s.applied {
		if now.Sub(at) > 24*time.Hour {
			delete(s.applied, id)
		}
	}
	oldest := now.Add(-s.keep).Unix()
	for k := range s.totals {
		if k.Hour < oldest {
			delete(s.totals, k)
		}
	}
	return nil
}

// Query returns the totals of consumer ("" for all) in [from, to).
func (s *MemoryStore) Query(_ context.Context, consumer string, from, to time.Time) (map[Key]Counts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[Key]Counts{}
	for k, c := range s.totals {
		if (consumer == "" || k.Consumer == consumer) && k.Hour >= from.Unix()-from.Unix()%3600 && k.Hour < to.Unix() {
			out[k] = c
		}
	}
	return out, nil
}
