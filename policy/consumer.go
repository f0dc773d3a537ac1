package policy

import "crypto/x509"

// Consumer is a configured API client (top-level consumers: in the config). Authentication
// policies map a verified credential to one; authorization and traffic-control policies read it
// through the request's Principal.
type Consumer struct {
	// Name is the consumer's stable id: it goes upstream as X-Consumer-ID, into the access log
	// and into counter keys.
	Name string
	// Groups are the consumer's groups, for authorization rules.
	Groups []string
	// Plan is the consumer's usage plan, when it has one.
	Plan string
	// Metadata is free-form, for placeholders and plugins.
	Metadata map[string]string
}

// Consumers is the directory of configured consumers a policy's build function receives. It is
// immutable for the life of a snapshot: a reload builds a new one.
type Consumers interface {
	// Lookup returns the consumer named name, or nil.
	Lookup(name string) *Consumer
	// APIKey returns the principal for the API key whose SHA-256 digest is digest (Method
	// "api_key", Credential the key's id), or nil. Keys are stored and looked up as digests
	// only. The principal is shared by every request with that key: never modify it.
	APIKey(digest [32]byte) *Principal
	// Basic returns the principal for the basic-auth username (Method "basic_auth") and the
	// password hash to verify against (bcrypt or argon2id, in their usual encodings), or nil.
	Basic(username string) (p *Principal, passwordHash string)
	// Certificate returns the principal for a client certificate the listener verified (Method
	// "mtls", Credential the identity that matched, e.g. "uri:spiffe://acme/billing"), matched
	// by SHA-256 fingerprint, then URI, DNS and email SANs, then the subject's common name; or
	// nil.
	Certificate(leaf *x509.Certificate) *Principal
	// All returns every consumer, in config order.
	All() []*Consumer
}

// PrincipalFor returns the principal of consumer c authenticated by method, with the credential
// id when one is known. Policies build these once, at build time, and reuse them per request.
func PrincipalFor(c *Consumer, method, credentialID string) *Principal {
	return &Principal{ID: c.Name, Groups: c.Groups, Plan: c.Plan, Method: method, Credential: credentialID, Consumer: c}
}
