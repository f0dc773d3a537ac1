package consumer

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/limen-gateway/limen/internal/config"
)

func TestDirectory(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte("digest-key-0123456789"))
	d := New([]*config.Consumer{
		{Name: "acme", Groups: []string{"partners"}, Plan: "pro", Credentials: config.Credentials{
			APIKeys:   []config.APIKeyCredential{{ID: "k1", SHA256: hex.EncodeToString(sum[:])}, {ID: "k2", Key: "env-key-0123456789abcdef"}},
			BasicAuth: []config.BasicCredential{{Username: "acme-admin", PasswordHash: "$2y$hash"}},
		}},
		nil,
		{Name: "guest"},
	})
	if len(d.All()) != 2 || d.Lookup("guest") == nil || d.Lookup("nobody") != nil {
		t.Fatalf("consumers %v", d.All())
	}
	p := d.APIKey(sum)
	if p == nil || p.ID != "acme" || p.Credential != "k1" || p.Method != "api_key" || p.Plan != "pro" || p.Consumer != d.Lookup("acme") {
		t.Fatalf("by digest: %+v", p)
	}
	if p2 := d.APIKey(sha256.Sum256([]byte("env-key-0123456789abcdef"))); p2 == nil || p2.Credential != "k2" {
		t.Fatalf("key from env: %+v", p2)
	}
	if d.APIKey(sha256.Sum256([]byte("other"))) != nil {
		t.Error("unknown key found")
	}
	// The same principal serves every request with the key: no allocation per request.
	if d.APIKey(sum) != p {
		t.Error("principal rebuilt per lookup")
	}
	bp, hash := d.Basic("acme-admin")
	if bp == nil || bp.ID != "acme" || bp.Method != "basic_auth" || hash != "$2y$hash" {
		t.Fatalf("basic: %+v %q", bp, hash)
	}
	if bp, _ := d.Basic("nobody"); bp != nil {
		t.Error("unknown username found")
	}
}

func BenchmarkAPIKeyLookup(b *testing.B) {
	cs := make([]*config.Consumer, 10000)
	for i := range cs {
		sum := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		cs[i] = &config.Consumer{Name: "c" + hex.EncodeToString(sum[:4]), Credentials: config.Credentials{APIKeys: []config.APIKeyCredential{{SHA256: hex.EncodeToString(sum[:])}}}}
	}
	d := New(cs)
	want := sha256.Sum256([]byte{77, 0})
	b.ReportAllocs()
	for b.Loop() {
		if d.APIKey(want) == nil {
			b.Fatal("not found")
		}
	}
}
