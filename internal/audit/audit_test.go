package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/time/rate"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func lines(t *testing.T, path string) []Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		out = append(out, e)
	}
	return out
}

func TestRecordAndRateLimit(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Output: path, PerSecond: 1}) // burst 10
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		l.Request(Event{Event: AuthnFailure, Route: "r", Code: "api_key_invalid"})
	}
	for range 3 {
		l.Request(Event{Event: AuthzDenied, Route: "r"}) // its own budget
	}
	l.Record(Event{Event: Admin, Actor: "ci", Action: "PUT /admin/config", Result: "ok"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	got := lines(t, path)
	var failures, denials, admin int
	for _, e := range got {
		switch e.Event {
		case AuthnFailure:
			failures++
		case AuthzDenied:
			denials++
		case Admin:
			admin++
		}
		if e.Time.IsZero() {
			t.Error("event without a time")
		}
	}
	// A flood is cut to the burst; the admin event and the other kind are unaffected.
	if failures < 10 || failures > 12 || denials != 3 || admin != 1 {
		t.Fatalf("failures %d, denials %d, admin %d", failures, denials, admin)
	}
	// After Close nothing is written and the loss is counted.
	l.Record(Event{Event: Reload})
	if l.Dropped() == 0 {
		t.Error("an event after Close was not counted as dropped")
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("audit file mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestSuppressedReported: once the limit lets an event through again, it says how many were
// left out.
func TestSuppressedReported(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(Options{Output: path, PerSecond: 1})
	if err != nil {
		t.Fatal(err)
	}
	lim := l.limits[AuthnFailure]
	for range 25 {
		l.Request(Event{Event: AuthnFailure})
	}
	suppressed := lim.suppressed.Load()
	lim.l.SetLimit(rate.Inf) // let the next one through at once
	l.Request(Event{Event: AuthnFailure, Route: "next"})
	l.Close()
	got := lines(t, path)
	last := got[len(got)-1]
	if suppressed == 0 || last.Route != "next" || last.Suppressed != suppressed {
		t.Fatalf("suppressed %d, last line %+v", suppressed, last)
	}
}

func TestNilLog(t *testing.T) {
	t.Parallel()
	var l *Log
	l.Request(Event{Event: AuthnFailure})
	l.Record(Event{Event: Reload})
	if l.Dropped() != 0 || l.Close() != nil {
		t.Fatal("a nil log is not a no-op")
	}
}

func TestOpenError(t *testing.T) {
	t.Parallel()
	if _, err := Open(Options{Output: filepath.Join(t.TempDir(), "missing", "audit.log")}); err == nil {
		t.Fatal("opened a file in a missing directory")
	}
}
