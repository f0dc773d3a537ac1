// Package consumer builds the snapshot's directory of consumers from the config: the index
// authentication policies look credentials up in. Secrets are held as digests (API keys) or
// password hashes only.
package consumer

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/policy"
)

// Directory implements policy.Consumers. It is immutable once built.
type Directory struct {
	all    []*policy.Consumer
	byName map[string]*policy.Consumer
	keys   map[[32]byte]*policy.Principal
	basic  map[string]basicLogin
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

// All returns every consumer in config order.
func (d *Directory) All() []*policy.Consumer { return d.all }
