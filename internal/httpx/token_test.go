package httpx

import (
	"strings"
	"testing"
)

func TestValidToken(t *testing.T) {
	for _, s := range []string{"X-Api-Key", "GET", "a", "!#$%&'*+-.^_`|~09azAZ"} {
		if !ValidToken(s) {
			t.Errorf("ValidToken(%q) = false", s)
		}
	}
	for _, s := range []string{"", "X Api", "X:Y", "a\r\nb", "é", "a\x00", "(x)", "a/b", "a\x7f"} {
		if ValidToken(s) {
			t.Errorf("ValidToken(%q) = true", s)
		}
	}
}

func TestValidFieldValue(t *testing.T) {
	for _, s := range []string{"", "plain", "tab\there", "ünïcode", `"quoted", (x)`} {
		if !ValidFieldValue(s) {
			t.Errorf("ValidFieldValue(%q) = false", s)
		}
	}
	for _, s := range []string{"a\r\nX-Injected: 1", "a\nb", "a\x00", "a\x7f", "\x1b[31m"} {
		if ValidFieldValue(s) {
			t.Errorf("ValidFieldValue(%q) = true", s)
		}
	}
}

// FuzzValidToken checks the table against the RFC's definition, character by character.
func FuzzValidToken(f *testing.F) {
	for _, s := range []string{"X-Api-Key", "", "a b", "é", "~|`"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := s != ""
		for i := 0; i < len(s); i++ {
			c := s[i]
			alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
			if !alnum && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
				want = false
			}
		}
		if got := ValidToken(s); got != want {
			t.Fatalf("ValidToken(%q) = %v, want %v", s, got, want)
		}
	})
}
