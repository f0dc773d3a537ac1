package policy

import (
	"errors"
	"testing"
)

type closeCount struct{ n *int }

func (c closeCount) Close() error { *c.n++; return nil }

func TestBuildContextAcquireWithoutPool(t *testing.T) {
	closed := 0
	obj, release, err := BuildContext{}.Acquire("k", func() (any, error) { return closeCount{&closed}, nil })
	if err != nil || obj == nil {
		t.Fatal(obj, err)
	}
	release()
	release()
	if closed != 1 {
		t.Errorf("closed %d times, want once", closed)
	}
	if _, _, err := (BuildContext{}).Acquire("k", func() (any, error) { return nil, errors.New("boom") }); err == nil {
		t.Error("a failed create was not reported")
	}
}
