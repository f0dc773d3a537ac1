// Package mtls provides the mtls policy: the caller is identified by the client certificate the
// listener verified during the TLS handshake (listeners[].tls.client_auth).
//
// The identity is read from the verified chain only (http.Request.TLS.VerifiedChains), never from
// PeerCertificates: a client can present any certificate, and only a chain the listener verified
// against its configured CAs says who the client is.
package mtls

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"

	"github.com/limen-gateway/limen/internal/authn"
	"github.com/limen-gateway/limen/policy"
)

// Kind is the policy kind this package registers.
const Kind = "mtls"

var phases = policy.PhaseRange{Default: policy.Authn, Min: policy.Edge, Max: policy.Authz}

func init() {
	policy.Register(Kind, phases, build)
}

var _ policy.Policy = (*mtls)(nil)

// xfcc is the header an upstream reads the certificate's identity from; clients' copies are
// removed by the server from untrusted peers and by this policy always.
const xfcc = "X-Forwarded-Client-Cert"

type mtls struct {
	cfg       Config
	consumers policy.Consumers
	anonymous *policy.Principal
}

// Refusals. A missing certificate is 403, not 401: the credential is negotiated in the TLS
// handshake, and no HTTP challenge can ask for it on this connection.
var (
	errNoCert = &policy.Error{Status: http.StatusForbidden, Code: "client_certificate_required",
		Detail: "this route needs a client certificate the listener verified"}
	errNotAllowed = &policy.Error{Status: http.StatusForbidden, Code: "client_certificate_not_allowed",
		Detail: "the client certificate is not allowed here"}
)

func build(bc policy.BuildContext, c *Config) (policy.Policy, error) {
	anon, err := authn.Anonymous(bc.Consumers, c.Anonymous)
	if err != nil {
		return nil, err
	}
	return &mtls{cfg: *c, consumers: bc.Consumers, anonymous: anon}, nil
}

func (m *mtls) Wrap(next policy.Handler) policy.Handler {
	return policy.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if m.cfg.ForwardCertificate {
			r.Header.Del(xfcc)
		}
		ex := policy.ExchangeFrom(r.Context())
		if ex == nil {
			return errNoCert
		}
		if ex.Principal.Identified() {
			return next.ServeHTTP(w, r)
		}
		leaf := verifiedLeaf(r)
		if leaf == nil {
			if err := authn.Absent(ex, m.anonymous, m.cfg.Optional, errNoCert); err != nil {
				return err
			}
			return next.ServeHTTP(w, r)
		}
		sum := sha256.Sum256(leaf.Raw)
		fp := hex.EncodeToString(sum[:])
		if !m.allowed(leaf, fp) {
			return errNotAllowed
		}
		p := m.principal(leaf, fp)
		if p == nil {
			return errNotAllowed
		}
		ex.Principal = p
		if m.cfg.ForwardCertificate {
			authn.SetUpstreamHeader(r, xfcc, forwardValue(leaf, fp))
		}
		return next.ServeHTTP(w, r)
	})
}

// verifiedLeaf returns the client certificate of the first chain the listener verified.
func verifiedLeaf(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

func (m *mtls) allowed(leaf *x509.Certificate, fp string) bool {
	c := &m.cfg
	if len(c.AllowedURIs) == 0 && len(c.AllowedDNS) == 0 && len(c.AllowedFingerprints) == 0 {
		return true
	}
	if slices.Contains(c.AllowedFingerprints, fp) {
		return true
	}
	for _, u := range leaf.URIs {
		if slices.Contains(c.AllowedURIs, u.String()) {
			return true
		}
	}
	for _, d := range leaf.DNSNames {
		if slices.Contains(c.AllowedDNS, strings.ToLower(d)) {
			return true
		}
	}
	return false
}

// principal maps the certificate to a consumer, or names it by its first URI SAN or CN.
func (m *mtls) principal(leaf *x509.Certificate, fp string) *policy.Principal {
	if m.consumers != nil {
		if p := m.consumers.Certificate(leaf); p != nil {
			return p
		}
	}
	if m.cfg.RequireConsumer {
		return nil
	}
	id := leaf.Subject.CommonName
	if len(leaf.URIs) > 0 {
		id = leaf.URIs[0].String()
	}
	if id == "" {
		id = "sha256:" + fp
	}
	return &policy.Principal{ID: id, Method: "mtls", Credential: "fingerprint:" + fp}
}

// forwardValue renders the certificate like Envoy's X-Forwarded-Client-Cert element.
func forwardValue(leaf *x509.Certificate, fp string) string {
	var b strings.Builder
	b.WriteString("Hash=")
	b.WriteString(fp)
	b.WriteString(`;Subject="`)
	b.WriteString(strings.ReplaceAll(leaf.Subject.String(), `"`, `\"`))
	b.WriteString(`"`)
	for _, u := range leaf.URIs {
		b.WriteString(";URI=")
		b.WriteString(u.String())
	}
	for _, d := range leaf.DNSNames {
		b.WriteString(";DNS=")
		b.WriteString(d)
	}
	return b.String()
}
