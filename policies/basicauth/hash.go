package basicauth

import (
	"bufio"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Limits on argon2id parameters read from config: a hash with absurd parameters would let one
// request take minutes or gigabytes.
const (
	maxArgonMemoryKiB = 256 << 10 // 256 MiB
	maxArgonTime      = 16
	maxArgonThreads   = 16
	maxArgonKeyLen    = 128
)

// hasher verifies passwords against one stored hash.
type hasher interface {
	verify(password []byte) bool
}

type bcryptHash []byte

func (h bcryptHash) verify(password []byte) bool {
	return bcrypt.CompareHashAndPassword(h, password) == nil
}

type argon2idHash struct {
	salt, key    []byte
	time, memory uint32
	threads      uint8
}

func (h *argon2idHash) verify(password []byte) bool {
	got := argon2.IDKey(password, h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(got, h.key) == 1
}

// parseHash reads a bcrypt ($2a$, $2b$, $2y$) or argon2id (PHC string format) hash.
func parseHash(s string) (hasher, error) {
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("bcrypt hash: %w", err)
		}
		return bcryptHash(s), nil
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$apr1$"), strings.HasPrefix(s, "{SHA}"), strings.HasPrefix(s, "$1$"):
		return nil, errors.New("MD5 and SHA-1 password hashes are too fast to protect a password; re-hash with bcrypt (htpasswd -B) or argon2id")
	}
	return nil, errors.New("unsupported password hash: want bcrypt ($2a$, $2b$, $2y$) or argon2id ($argon2id$v=19$...)")
}

// parseArgon2id reads $argon2id$v=19$m=65536,t=3,p=4$<salt>$<key> (unpadded standard base64).
func parseArgon2id(s string) (hasher, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[2] != "v=19" {
		return nil, errors.New("argon2id hash: want $argon2id$v=19$m=...,t=...,p=...$salt$key")
	}
	h := &argon2idHash{}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("argon2id hash: bad parameter %q", kv)
		}
		switch k {
		case "m":
			h.memory = uint32(n)
		case "t":
			h.time = uint32(n)
		case "p":
			if n > 255 {
				return nil, fmt.Errorf("argon2id hash: bad parameter %q", kv)
			}
			h.threads = uint8(n)
		default:
			return nil, fmt.Errorf("argon2id hash: unknown parameter %q", k)
		}
	}
	switch {
	case h.memory == 0 || h.time == 0 || h.threads == 0:
		return nil, errors.New("argon2id hash: m, t and p are required")
	case h.memory > maxArgonMemoryKiB || h.time > maxArgonTime || h.threads > maxArgonThreads:
		return nil, fmt.Errorf("argon2id hash: parameters above the limits (m<=%d, t<=%d, p<=%d)", maxArgonMemoryKiB, maxArgonTime, maxArgonThreads)
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return nil, errors.New("argon2id hash: the salt is not unpadded base64 of at least 8 bytes")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > maxArgonKeyLen {
		return nil, errors.New("argon2id hash: the key is not unpadded base64 of 16 to 128 bytes")
	}
	return h, nil
}

// parseHtpasswd reads "user:hash" lines; blank lines and # comments are skipped.
func parseHtpasswd(r io.Reader) (map[string]hasher, error) {
	out := map[string]hasher{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		user, hash, ok := strings.Cut(text, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: want user:hash", line)
		}
		if _, dup := out[user]; dup {
			return nil, fmt.Errorf("line %d: user %q appears twice", line, user)
		}
		h, err := parseHash(hash)
		if err != nil {
			return nil, fmt.Errorf("line %d (user %q): %w", line, user, err)
		}
		out[user] = h
	}
	return out, sc.Err()
}
