package refpool

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

type closeCounter struct{ closed *atomic.Int32 }

func (c closeCounter) Close() error { c.closed.Add(1); return nil }

func TestPoolRefCounting(t *testing.T) {
	t.Parallel()
	p := &Pool{}
	var closed atomic.Int32
	creates := 0
	create := func() (any, error) { creates++; return closeCounter{&closed}, nil }

	a, relA, err := p.Acquire("k", create)
	if err != nil {
		t.Fatal(err)
	}
	b, relB, _ := p.Acquire("k", create)
	if a != b || creates != 1 {
		t.Fatalf("second acquire created again (creates=%d)", creates)
	}
	relA()
	relA() // releasing twice must not drop another holder's reference
	if closed.Load() != 0 {
		t.Fatal("closed while still held")
	}
	relB()
	if closed.Load() != 1 {
		t.Fatalf("closed %d times, want 1", closed.Load())
	}
	if len(p.Keys()) != 0 {
		t.Fatalf("keys left: %v", p.Keys())
	}
}

func TestPoolCreateFailureIsRetried(t *testing.T) {
	t.Parallel()
	p := &Pool{}
	if _, _, err := p.Acquire("k", func() (any, error) { return nil, errors.New("boom") }); err == nil {
		t.Fatal("want error")
	}
	obj, rel, err := p.Acquire("k", func() (any, error) { return 42, nil })
	if err != nil || obj != 42 {
		t.Fatalf("got %v, %v", obj, err)
	}
	rel()
}

func TestPoolConcurrentAcquireCreatesOnce(t *testing.T) {
	t.Parallel()
	p := &Pool{}
	var creates atomic.Int32
	var wg sync.WaitGroup
	rels := make([]func(), 32)
	for i := range rels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, rel, err := p.Acquire("k", func() (any, error) {
				creates.Add(1)
				// Nested acquires must not deadlock.
				_, inner, err := p.Acquire("inner", func() (any, error) { return 1, nil })
				if err != nil {
					return nil, err
				}
				inner()
				return 1, nil
			})
			if err != nil {
				t.Error(err)
				return
			}
			rels[i] = rel
		}()
	}
	wg.Wait()
	if creates.Load() != 1 {
		t.Fatalf("created %d times", creates.Load())
	}
	for _, r := range rels {
		r()
	}
	if len(p.Keys()) != 0 {
		t.Fatalf("keys left: %v", p.Keys())
	}
}
