package basicauth

import (
	"errors"
	"time"

	"github.com/limen-gateway/limen/policy"
)

// Config is the configuration of the basic_auth policy. Logins come from consumers
// (credentials.basic_auth) and, optionally, an htpasswd file.
type Config struct {
	// Realm is the realm of the WWW-Authenticate challenge. Default "limen".
	Realm string `json:"realm,omitempty"`
	// Htpasswd is an htpasswd file (bcrypt or argon2id entries only; relative to the config's
	// directory). A username found there but not among consumers authenticates as that
	// username, with no consumer. Consumers win when a name is in both.
	Htpasswd policy.File `json:"htpasswd,omitempty"`
	// CacheTTL is how long a successful verification is remembered, so a client sending the
	// same credentials on every request pays the deliberately slow hash once. "0s" turns the
	// cache off. Default 1m.
	CacheTTL *policy.Duration `json:"cache_ttl,omitempty"`
	// CacheSize bounds the number of remembered verifications. Default 10000.
	CacheSize int `json:"cache_size,omitempty"`
	// Optional lets a request without credentials through unauthenticated (for a later
	// authentication policy or a require policy to decide). Wrong credentials are always 401.
	Optional bool `json:"optional,omitempty"`
	// Anonymous names the consumer a request without credentials is served as.
	Anonymous string `json:"anonymous,omitempty"`
}

// Validate fills defaults and checks the combination of fields.
func (c *Config) Validate() error {
	if c.Realm == "" {
		c.Realm = "limen"
	}
	if c.CacheTTL == nil {
		d := policy.Duration(time.Minute)
		c.CacheTTL = &d
	}
	if c.CacheSize == 0 {
		c.CacheSize = 10000
	}
	if c.CacheSize < 0 {
		return errors.New("cache_size must not be negative")
	}
	if c.Optional && c.Anonymous != "" {
		return errors.New("optional and anonymous exclude each other: anonymous already lets requests without credentials through")
	}
	return nil
}
