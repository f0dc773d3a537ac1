package apikey

import (
	"errors"

	"github.com/limen-gateway/limen/internal/authn"
)

// Config is the configuration of the api_key policy. Keys belong to consumers (top-level
// consumers: ... credentials.api_keys) and are stored as SHA-256 digests.
type Config struct {
	// From lists where the key is read, in order; the first present wins. Default: the
	// X-API-Key header.
	From []authn.Source `json:"from,omitempty"`
	// KeepCredential sends the key upstream too. By default it is removed from the request.
	KeepCredential bool `json:"keep_credential,omitempty"`
	// Optional lets a request without any key through unauthenticated, for a later
	// authentication policy (any-of) or a require policy to decide. A key that is present but
	// wrong is always 401.
	Optional bool `json:"optional,omitempty"`
	// Anonymous names the consumer a request without any key is served as. Without it (and
	// without optional) such a request gets 401.
	Anonymous string `json:"anonymous,omitempty"`
	// Realm is the realm of the WWW-Authenticate challenge. Default "limen".
	Realm string `json:"realm,omitempty"`
}

// Validate checks the sources and fills defaults.
func (c *Config) Validate() error {
	var err error
	if c.From, err = authn.Sources(c.From, authn.Source{Header: "X-API-Key"}); err != nil {
		return err
	}
	if c.Optional && c.Anonymous != "" {
		return errors.New("optional and anonymous exclude each other: anonymous already lets requests without a key through")
	}
	if c.Realm == "" {
		c.Realm = "limen"
	}
	return nil
}
