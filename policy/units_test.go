package policy

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Size
		ok   bool
	}{
		{`65536`, 65536, true},
		{`"64KiB"`, 64 << 10, true},
		{`"1 MiB"`, 1 << 20, true},
		{`"10KB"`, 10000, true},
		{`"512B"`, 512, true},
		{`-1`, 0, false},
		{`"64kb"`, 0, false},
		{`"1.5MiB"`, 0, false},
		{`"+5"`, 0, false},
		{`"MiB"`, 0, false},
		{`true`, 0, false},
	}
	for _, tc := range tests {
		var s Size
		err := json.Unmarshal([]byte(tc.in), &s)
		if (err == nil) != tc.ok || s != tc.want {
			t.Errorf("%s: %d, %v; want %d (ok %v)", tc.in, s, err, tc.want, tc.ok)
		}
	}
}

func FuzzSize(f *testing.F) {
	for _, s := range []string{"1MiB", "512", "10 KB", "GiB", "-1B", "+5", "9223372036854775807", "4611686018427387904B", "1.5MiB", " 7 B "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		quoted, _ := json.Marshal(s)
		var n Size
		if err := json.Unmarshal(quoted, &n); err != nil {
			return
		}
		if n < 0 || n > 1<<62 {
			t.Fatalf("%q = %d, outside 0..4EiB", s, n)
		}
		back, _ := json.Marshal(n)
		var m Size
		if err := json.Unmarshal(back, &m); err != nil || m != n {
			t.Fatalf("%q = %d does not round-trip: %s -> %d, %v", s, n, back, m, err)
		}
	})
}

// FuzzParseSize checks that ParseSize never panics, never returns a negative size, and agrees
// with itself on the number of bytes it returns.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1MiB", "512", "10 KB", "GiB", "-1B", "+5", "9223372036854775807", "4611686018427387904B", "1.5MiB", " 7 B "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		if m, err := ParseSize(strings.TrimSpace(s)); err != nil || m != n {
			t.Fatalf("ParseSize(%q) = %d but trimmed = %d, %v", s, n, m, err)
		}
	})
}
