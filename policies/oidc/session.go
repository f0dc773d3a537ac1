package oidc

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

const (
	// maxCookieBytes is the largest session cookie value the policy writes. Browsers keep at
	// least 4096 bytes per cookie, name and attributes included (RFC 6265 §6.1); this leaves
	// room for them. A larger session is written without its claims (see seal).
	maxCookieBytes = 3800
	// flowTTL bounds a login in progress: the user has this long at the provider.
	flowTTL = 10 * time.Minute
	// minRecheck is how soon a refreshed session is checked with the provider again when the
	// provider states no lifetime for what it issued.
	minRecheck = 5 * time.Minute
)

// session is what the session cookie holds, encrypted: no server-side store, so any node with
// the key can serve it. Field names are short because every byte is sent with every request.
type session struct {
	// Sub is the ID token's subject.
	Sub string `json:"s"`
	// Claims are the ID token's claims, without the ones that only describe the token.
	Claims map[string]any `json:"c,omitempty"`
	// IDToken is the raw ID token, for id_token_hint at logout.
	IDToken string `json:"i,omitempty"`
	// Fresh is when the login must be checked with the provider again (unix seconds): the ID
	// token's expiry, then the refreshed tokens'.
	Fresh int64 `json:"f"`
	// AccessExp is the access token's expiry (unix seconds), 0 when the provider gave none.
	AccessExp int64 `json:"a,omitempty"`
	// Refresh is the refresh token, when the provider issued one.
	Refresh string `json:"r,omitempty"`
	// End is when the session ends whatever happens (login + session_ttl, unix seconds).
	End int64 `json:"e"`
}

// expired reports whether the session is over: past its end or, without a refresh token, past
// its freshness.
func (s *session) expired(now time.Time) bool {
	n := now.Unix()
	return n >= s.End || (s.Refresh == "" && n >= s.Fresh)
}

// stale reports whether the session needs a refresh before it serves a request.
func (s *session) stale(now time.Time) bool {
	n := now.Unix()
	return s.Refresh != "" && (n >= s.Fresh || (s.AccessExp != 0 && n >= s.AccessExp))
}

// until is when the session cookie should expire in the browser.
func (s *session) until() time.Time {
	if s.Refresh == "" && s.Fresh < s.End {
		return time.Unix(s.Fresh, 0)
	}
	return time.Unix(s.End, 0)
}

// flow is the login in progress, kept in its own short-lived cookie between the redirect to the
// provider and the callback.
type flow struct {
	State    string `json:"st"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	// URL is where the user was going: a path and query on this host, never an absolute URL.
	URL string `json:"u"`
	// Exp bounds the flow (unix seconds), checked inside the authenticated payload rather than
	// trusted to the cookie's Max-Age.
	Exp int64 `json:"e"`
}

// sealer encrypts and authenticates cookie payloads with AES-256-GCM. Each payload is bound by
// its additional data to its purpose (session or flow) and to the policy's issuer, client and
// cookie, so one cookie cannot stand in for another, nor a session from another route's provider
// for this one's.
type sealer struct {
	aead              cipher.AEAD
	sessionAD, flowAD []byte
}

func newSealer(key []byte, issuer, clientID, cookie string) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	bind := "\x00" + issuer + "\x00" + clientID + "\x00" + cookie
	return &sealer{aead: aead, sessionAD: []byte("limen-oidc-session" + bind), flowAD: []byte("limen-oidc-flow" + bind)}, nil
}

// parseKey reads a 32-byte key written as hex or base64 (standard or URL alphabet, padded or
// not).
func parseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if k, err := hex.DecodeString(s); err == nil && len(s) >= 32 {
		if len(k) != 32 {
			return nil, fmt.Errorf("the key is %d bytes (%d hex digits); want 32 (e.g. openssl rand -hex 32)", len(k), len(s))
		}
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != 32 {
				return nil, fmt.Errorf("the key is %d bytes; want 32 (e.g. openssl rand -hex 32)", len(k))
			}
			return k, nil
		}
	}
	return nil, errors.New("want 32 bytes as 64 hex digits or base64 (e.g. openssl rand -hex 32)")
}

func (s *sealer) seal(ad []byte, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, ad)), nil
}

func (s *sealer) open(ad []byte, value string, v any) error {
	if len(value) > 2*maxCookieBytes {
		return errors.New("cookie too large")
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return err
	}
	if len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return errors.New("cookie too short")
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], ad)
	if err != nil {
		return errors.New("cookie does not authenticate")
	}
	return json.Unmarshal(plain, v)
}

// sealSession encrypts a session for its cookie. A session too large for a cookie is written
// again with only the claims the policy itself uses (consumer_claim and forward_claims) and
// without the ID token, then, if still too large, with only the subject, times and refresh
// token: the login holds, forwarded claims are not sent.
func (s *sealer) sealSession(ss *session, keep []string) (string, error) {
	v, err := s.seal(s.sessionAD, ss)
	if err != nil || len(v) <= maxCookieBytes {
		return v, err
	}
	slim := *ss
	slim.IDToken = ""
	slim.Claims = nil
	for _, path := range keep {
		top, _, _ := strings.Cut(path, ".")
		if c, ok := ss.Claims[top]; ok {
			if slim.Claims == nil {
				slim.Claims = map[string]any{}
			}
			slim.Claims[top] = c
		}
	}
	if v, err = s.seal(s.sessionAD, &slim); err != nil || len(v) <= maxCookieBytes {
		return v, err
	}
	slim.Claims = nil
	if v, err = s.seal(s.sessionAD, &slim); err != nil || len(v) <= maxCookieBytes {
		return v, err
	}
	return "", errors.New("the session does not fit in a cookie even without its claims (is the refresh token larger than 2 KiB?)")
}

// randomString returns 32 random bytes, base64url-encoded: for state and nonce.
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// localURL returns u when it is a path on this host ("/a?b"), and "/" otherwise. Anything that
// a browser could read as another host ("//evil.example", "/\evil.example", "https://...")
// becomes "/": the URL a user was going to is replayed as a redirect after login, and must not
// become an open redirect.
func localURL(u string) string {
	if len(u) == 0 || u[0] != '/' || len(u) > 2048 {
		return "/"
	}
	if len(u) > 1 && (u[1] == '/' || u[1] == '\\') {
		return "/"
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	return u
}
