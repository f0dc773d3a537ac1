package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/config"
	"github.com/limen-gateway/limen/internal/consumer"
	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

func leaf(t *testing.T, cn, uri string, dns ...string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: []string{"Acme"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: dns}
	if uri != "" {
		u, _ := url.Parse(uri)
		tpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

func TestMTLS(t *testing.T) {
	t.Parallel()
	billing := leaf(t, "billing", "spiffe://acme/billing")
	pinned := leaf(t, "pinned", "")
	web := leaf(t, "web", "", "web.internal")
	stranger := leaf(t, "stranger", "spiffe://acme/stranger")
	dir := consumer.New([]*config.Consumer{
		{Name: "billing-svc", Groups: []string{"internal"}, Credentials: config.Credentials{Certificates: []config.CertificateCredential{{URI: "spiffe://acme/billing"}}}},
		{Name: "pinned-svc", Credentials: config.Credentials{Certificates: []config.CertificateCredential{{Fingerprint: fingerprint(pinned)}}}},
		{Name: "web-svc", Credentials: config.Credentials{Certificates: []config.CertificateCredential{{DNS: "WEB.internal"}}}},
		{Name: "guest"},
	})
	opts := func(bc *policy.BuildContext) { bc.Consumers = dir }
	tests := []struct {
		name, config string
		verified     *x509.Certificate
		presented    *x509.Certificate // in PeerCertificates only: never trusted
		status       int
		principal    string
	}{
		{"consumer by URI", `{}`, billing, nil, 0, "billing-svc"},
		{"consumer by fingerprint", `{}`, pinned, nil, 0, "pinned-svc"},
		{"consumer by DNS, any case", `{}`, web, nil, 0, "web-svc"},
		{"not a consumer: its URI", `{}`, stranger, nil, 0, "spiffe://acme/stranger"},
		{"not a consumer, required", `{"require_consumer": true}`, stranger, nil, 403, ""},
		{"no certificate", `{}`, nil, nil, 403, ""},
		{"unverified certificate only", `{}`, nil, billing, 403, ""},
		{"optional", `{"optional": true}`, nil, nil, 0, ""},
		{"anonymous", `{"anonymous": "guest"}`, nil, nil, 0, "guest"},
		{"allowed URI", `{"allowed_uris": ["spiffe://acme/billing"]}`, billing, nil, 0, "billing-svc"},
		{"URI not allowed", `{"allowed_uris": ["spiffe://acme/billing"]}`, stranger, nil, 403, ""},
		{"allowed fingerprint with colons", `{"allowed_fingerprints": ["` + colons(fingerprint(pinned)) + `"]}`, pinned, nil, 0, "pinned-svc"},
		{"allowed DNS", `{"allowed_dns": ["web.internal"]}`, web, nil, 0, "web-svc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := policytest.MustBuild(t, Kind, tc.config, opts)
			r := httptest.NewRequest("GET", "https://api.example.com/", nil)
			r.TLS = &tls.ConnectionState{}
			if tc.verified != nil {
				r.TLS.PeerCertificates = []*x509.Certificate{tc.verified}
				r.TLS.VerifiedChains = [][]*x509.Certificate{{tc.verified}}
			}
			if tc.presented != nil {
				r.TLS.PeerCertificates = []*x509.Certificate{tc.presented}
			}
			ex := &policy.Exchange{}
			res := policytest.Serve(p, r, ex, nil)
			if tc.status != 0 {
				if pe := policytest.PolicyError(res.Err); pe == nil || pe.Status != tc.status || res.Reached {
					t.Fatalf("got %v, want %d", res.Err, tc.status)
				}
				return
			}
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			got := ""
			if ex.Principal != nil {
				got = ex.Principal.ID
			}
			if got != tc.principal {
				t.Errorf("principal %q, want %q", got, tc.principal)
			}
		})
	}
}

func colons(hexs string) string {
	var parts []string
	for i := 0; i < len(hexs); i += 2 {
		parts = append(parts, strings.ToUpper(hexs[i:i+2]))
	}
	return strings.Join(parts, ":")
}

func TestForwardCertificate(t *testing.T) {
	t.Parallel()
	c := leaf(t, "billing", "spiffe://acme/billing", "billing.internal")
	p := policytest.MustBuild(t, Kind, `{"forward_certificate": true}`)
	r := httptest.NewRequest("GET", "https://api.example.com/", nil)
	r.Header.Set("X-Forwarded-Client-Cert", "Hash=forged")
	r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c}}}
	res := policytest.Serve(p, r, nil, nil)
	got := res.Seen.Header.Get("X-Forwarded-Client-Cert")
	if res.Err != nil || !strings.HasPrefix(got, "Hash="+fingerprint(c)) || !strings.Contains(got, "URI=spiffe://acme/billing") || !strings.Contains(got, "DNS=billing.internal") {
		t.Fatalf("err %v, XFCC %q", res.Err, got)
	}
	// Without a certificate a client's copy is still removed.
	p = policytest.MustBuild(t, Kind, `{"forward_certificate": true, "optional": true}`)
	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Forwarded-Client-Cert", "Hash=forged")
	if res := policytest.Serve(p, r, nil, nil); res.Seen.Header.Get("X-Forwarded-Client-Cert") != "" {
		t.Fatal("a client's X-Forwarded-Client-Cert reached the upstream")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{`{"allowed_fingerprints": ["abc"]}`, `{"optional": true, "anonymous": "x"}`, `{"allow": []}`} {
		if _, err := policytest.Build(Kind, bad); err == nil {
			t.Errorf("%s built", bad)
		}
	}
}

func TestDocExamples(t *testing.T) {
	dir := consumer.New([]*config.Consumer{{Name: "guest"}})
	policytest.CheckDocExamples(t, "../../docs/policies/mtls.md", Kind, func(bc *policy.BuildContext) { bc.Consumers = dir })
}
