package state

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store keeps small values with a time to live: DESIGN's third capability, for response cache
// entries and idempotency records. Keys are namespaced by the caller.
type Store interface {
	// Get returns the value under key, and whether there was one.
	Get(ctx context.Context, key string) ([]byte, bool, error)
	// Set stores value under key for ttl.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// SetNX stores value only when key is absent, and reports whether it did: the first of
	// several nodes to claim a key (an idempotency key) wins.
	SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// Delete removes key.
	Delete(ctx context.Context, key string) error
}

// ErrValueTooLarge refuses values over the store's bound.
var ErrValueTooLarge = errors.New("value too large for the store")

// MemoryStore is a Store in this process, bounded in entries and in bytes per value.
type MemoryStore struct {
	mu       sync.Mutex
	m        map[string]memoryEntry
	maxKeys  int
	maxValue int
	now      func() time.Time
}

type memoryEntry struct {
	v       []byte
	expires time.Time
}

// NewMemoryStore keeps at most maxKeys entries (100,000 when <= 0) of at most maxValue bytes each
// (1 MiB when <= 0). When full, expired entries go first, then arbitrary ones.
func NewMemoryStore(maxKeys, maxValue int) *MemoryStore {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	if maxValue <= 0 {
		maxValue = 1 << 20
	}
	return &MemoryStore{m: map[string]memoryEntry{}, maxKeys: maxKeys, maxValue: maxValue, now: time.Now}
}

// Get implements Store.
func (s *MemoryStore) Get(_ context.Context, key string) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok || !s.now().Before(e.expires) {
		delete(s.m, key)
		return nil, false, nil
	}
	return append([]byte(nil), e.v...), true, nil
}

// Set implements Store.
func (s *MemoryStore) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setLocked(key, value, ttl)
}

func (s *MemoryStore) setLocked(key string, value []byte, ttl time.Duration) error {
	if len(value) > s.maxValue {
		return ErrValueTooLarge
	}
	now := s.now()
	if _, exists := s.m[key]; !exists && len(s.m) >= s.maxKeys {
		for k, e := range s.m {
			if !now.Before(e.expires) {
				delete(s.m, k)
			}
		}
		for k := range s.m {
			if len(s.m) < s.maxKeys {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[key] = memoryEntry{v: append([]byte(nil), value...), expires: now.Add(ttl)}
	return nil
}

// SetNX implements Store.
func (s *MemoryStore) SetNX(_ context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok && s.now().Before(e.expires) {
		return false, nil
	}
	return true, s.setLocked(key, value, ttl)
}

// Delete implements Store.
func (s *MemoryStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// RedisStore is a Store in Redis, shared by every node, behind the same breaker as the other
// Redis capabilities.
type RedisStore struct {
	r        *Redis
	prefix   string
	maxValue int
}

// Store returns a Redis store namespaced by name, refusing values over maxValue bytes (1 MiB when
// <= 0).
func (r *Redis) Store(name string, maxValue int) *RedisStore {
	if maxValue <= 0 {
		maxValue = 1 << 20
	}
	return &RedisStore{r: r, prefix: r.prefix + "s:" + name + ":", maxValue: maxValue}
}

func (s *RedisStore) do(ctx context.Context, f func(context.Context) error) error {
	if !s.r.allow(time.Now()) {
		return ErrUnavailable
	}
	ctx, cancel := s.r.bound(ctx, s.r.timeout)
	defer cancel()
	err := f(ctx)
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	s.r.result(err)
	return err
}

// Get implements Store.
func (s *RedisStore) Get(ctx context.Context, key string) ([]byte, bool, error) {
	var v []byte
	found := false
	err := s.do(ctx, func(ctx context.Context) error {
		b, err := s.r.client.Get(ctx, s.prefix+key).Bytes()
		if err == nil {
			v, found = b, true
		}
		return err
	})
	return v, found, err
}

// Set implements Store.
func (s *RedisStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if len(value) > s.maxValue {
		return ErrValueTooLarge
	}
	return s.do(ctx, func(ctx context.Context) error { return s.r.client.Set(ctx, s.prefix+key, value, ttl).Err() })
}

// SetNX implements Store.
func (s *RedisStore) SetNX(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if len(value) > s.maxValue {
		return false, ErrValueTooLarge
	}
	var ok bool
	err := s.do(ctx, func(ctx context.Context) error {
		var err error
		ok, err = s.r.client.SetNX(ctx, s.prefix+key, value, ttl).Result()
		return err
	})
	return ok, err
}

// Delete implements Store.
func (s *RedisStore) Delete(ctx context.Context, key string) error {
	return s.do(ctx, func(ctx context.Context) error { return s.r.client.Del(ctx, s.prefix+key).Err() })
}

var (
	_ Store = (*MemoryStore)(nil)
	_ Store = (*RedisStore)(nil)
)
