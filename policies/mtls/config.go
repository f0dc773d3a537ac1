package mtls

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Config is the configuration of the mtls policy: a route that needs the caller's client
// certificate, verified by the listener (listeners[].tls.client_auth), as its identity.
type Config struct {
	// AllowedURIs, AllowedDNS and AllowedFingerprints, when any is set, restrict the route to
	// certificates with one of these URI SANs, DNS SANs or SHA-256 fingerprints (hex).
	AllowedURIs []string `json:"allowed_uris,omitempty"`
	// AllowedDNS lists DNS subject alternative names allowed (see AllowedURIs).
	AllowedDNS []string `json:"allowed_dns,omitempty"`
	// AllowedFingerprints lists certificate SHA-256 fingerprints allowed (see AllowedURIs).
	AllowedFingerprints []string `json:"allowed_fingerprints,omitempty"`
	// RequireConsumer refuses a verified certificate that maps to no configured consumer
	// (consumers[].credentials.certificates). By default such a caller is identified by its
	// first URI SAN, or else its subject's common name.
	RequireConsumer bool `json:"require_consumer,omitempty"`
	// Optional lets a request without a client certificate through unauthenticated, for a
	// later authentication policy or a require policy to decide.
	Optional bool `json:"optional,omitempty"`
	// Anonymous names the consumer a request without a client certificate is served as.
	Anonymous string `json:"anonymous,omitempty"`
	// ForwardCertificate sends the verified certificate's identity upstream in
	// X-Forwarded-Client-Cert (Envoy's format: Hash, Subject, URI, DNS). Clients' copies of
	// that header are always removed.
	ForwardCertificate bool `json:"forward_certificate,omitempty"`
}

var fingerprintRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks the allow-lists.
func (c *Config) Validate() error {
	for i, f := range c.AllowedFingerprints {
		f = strings.ToLower(strings.ReplaceAll(f, ":", ""))
		if !fingerprintRE.MatchString(f) {
			return fmt.Errorf("allowed_fingerprints[%d]: want a SHA-256 as 64 hex digits", i)
		}
		c.AllowedFingerprints[i] = f
	}
	for i, d := range c.AllowedDNS {
		c.AllowedDNS[i] = strings.ToLower(d)
	}
	if c.Optional && c.Anonymous != "" {
		return errors.New("optional and anonymous exclude each other")
	}
	return nil
}
