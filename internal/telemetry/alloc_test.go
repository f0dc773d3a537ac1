//go:build !race

// The race detector makes sync.Pool drop items at random, so allocation counts only hold without it.

package telemetry

import (
	"io"
	"testing"
	"time"
)

func TestHotPathAllocations(t *testing.T) {
	m := NewMetrics()
	r := m.Route("users")
	r.Observe("GET", 200, time.Millisecond)
	if n := testing.AllocsPerRun(1000, func() { r.Observe("GET", 200, time.Millisecond) }); n != 0 {
		t.Errorf("Observe allocates %v times in steady state", n)
	}
	e := benchEntry()
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(1000, func() { buf = e.AppendJSON(buf[:0]) }); n != 0 {
		t.Errorf("AppendJSON allocates %v times", n)
	}
	l := newAccessLog(io.Discard, nil, 1<<16)
	defer l.Close()
	// A line is encoded on the stack and copied into the shared batch: only the batch's
	// occasional growth allocates.
	if n := testing.AllocsPerRun(1000, func() { l.Log(&e) }); n != 0 {
		t.Errorf("Log allocates %v times", n)
	}
}
