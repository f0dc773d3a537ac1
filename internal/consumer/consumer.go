// Package consumer builds the snapshot's directory of consumers from the config: the index
// authentication policies look credentials up in. Secrets are held as digests (API keys) or
// password hashes only.
package consumer

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/policy"
)

// Directory implements policy.Consumers. It is immutable once built.
type Directory struct {
	all    []*policy.Consumer
	byName map[string]*policy.Consumer
	keys   map[[32]byte]*policy.Principal
	basic  map[string]basicLogin
	certs  map[string]*policy.Principal // "fingerprint:<hex>", "uri:...", "dns:...", "email:...", "cn:..."
}

type basicLogin struct {
	p    *policy.Principal
	hash string
}

var _ policy.Consumers = (*Directory)(nil)

// New indexes cs. The config was validated: names, key digests and usernames are unique.
func New(cs []*config.Consumer) *Directory {
	d := &Directory{
		byName: make(map[string]*policy.Consumer, len(cs)),
		keys:   map[[32]byte]*policy.Principal{},
		basic:  map[string]basicLogin{},
		certs:  map[string]*policy.Principal{},
	}
	for _, cc := range cs {
		if cc == nil {
			continue
		}
		c := &policy.Consumer{Name: cc.Name, Groups: cc.Groups, Plan: cc.Plan, Metadata: cc.Metadata}
		d.all = append(d.all, c)
		d.byName[c.Name] = c
		for _, k := range cc.Credentials.APIKeys {
			digest, ok := Digest(k)
			if ok {
				d.keys[digest] = policy.PrincipalFor(c, "api_key", k.ID)
			}
		}
		for _, cert := range cc.Credentials.Certificates {
			if id := certIdentity(cert); id != "" {
				d.certs[id] = policy.PrincipalFor(c, "mtls", id)
			}
		}
		for _, b := range cc.Credentials.BasicAuth {
			d.basic[b.Username] = basicLogin{p: policy.PrincipalFor(c, "basic_auth", b.Username), hash: b.PasswordHash}
		}
	}
	return d
}

// Digest returns the SHA-256 digest a credential stands for: its sha256 field, or the digest of
// its key (from the environment).
func Digest(k config.APIKeyCredential) ([32]byte, bool) {
	var out [32]byte
	if k.Key != "" {
		return sha256.Sum256([]byte(k.Key)), true
	}
	b, err := hex.DecodeString(k.SHA256)
	if err != nil || len(b) != len(out) {
		return out, false
	}
	copy(out[:], b)
	return out, true
}

// Lookup returns the consumer named name, or nil.
func (d *Directory) Lookup(name string) *policy.Consumer { return d.byName[name] }

// APIKey returns the principal for the key with digest. The lookup is by digest, so its timing
// says nothing usable about the key itself.
func (d *Directory) APIKey(digest [32]byte) *policy.Principal { return d.keys[digest] }

// Basic returns the principal for username and its password hash.
func (d *Directory) Basic(username string) (*policy.Principal, string) {
	b, ok := d.basic[username]
	if !ok {
		return nil, ""
	}
	return b.p, b.hash
}

func certIdentity(c config.CertificateCredential) string {
	switch {
	case c.Fingerprint != "":
		return "fingerprint:" + c.Fingerprint
	case c.URI != "":
		return "uri:" + c.URI
	case c.DNS != "":
		return "dns:" + strings.ToLower(c.DNS)
	case c.Email != "":
		return "email:" + c.Email
	case c.CommonName != "":
		return "cn:" + c.CommonName
	}
	return ""
}

// Certificate returns the principal a verified client certificate maps to: by fingerprint
// first (one exact certificate), then its URI, DNS and email names, then its common name.
func (d *Directory) Certificate(leaf *x509.Certificate) *policy.Principal {
	if leaf == nil || len(d.certs) == 0 {
		return nil
	}
	sum := sha256.Sum256(leaf.Raw)
	if p := d.certs["fingerprint:"+hex.EncodeToString(sum[:])]; p != nil {
		return p
	}
	for _, u := range leaf.URIs {
		if p := d.certs["uri:"+u.String()]; p != nil {
			return p
		}
	}
	for _, n := range leaf.DNSNames {
		if p := d.certs["dns:"+strings.ToLower(n)]; p != nil {
			return p
		}
	}
	for _, e := range leaf.EmailAddresses {
		if p := d.certs["email:"+e]; p != nil {
			return p
		}
	}
	if cn := leaf.Subject.CommonName; cn != "" {
		return d.certs["cn:"+cn]
	}
	return nil
}

// All returns every consumer in config order.
func (d *Directory) All() []*policy.Consumer { return d.all }
