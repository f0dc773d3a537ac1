package ipfilter

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/limen-gateway/limen/policies/internal/policytest"
	"github.com/limen-gateway/limen/policy"
)

func TestIPFilter(t *testing.T) {
	const (
		allowOnly = `{"allow": ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]}`
		denyOnly  = `{"deny": ["203.0.113.0/24", "2001:db8:bad::/48"]}`
		both      = `{"allow": ["10.0.0.0/8"], "deny": ["10.1.0.0/16", "10.2.3.4"]}`
		mapped    = `{"allow": ["::ffff:198.51.100.0/120"]}`
		everyone  = `{"deny": ["0.0.0.0/0", "::/0"]}`
	)
	tests := []struct {
		config, ip string
		allowed    bool
	}{
		{allowOnly, "10.200.3.4", true},
		{allowOnly, "192.0.2.7", true},
		{allowOnly, "192.0.2.8", false},
		{allowOnly, "2001:db8:1::5", true},
		{allowOnly, "2001:db9::1", false},
		{allowOnly, "::ffff:10.0.0.1", true}, // mapped client addresses are unmapped
		{allowOnly, "fe80::1%eth0", false},
		{allowOnly, "", false}, // unknown client: fail closed
		{denyOnly, "203.0.113.200", false},
		{denyOnly, "203.0.114.1", true},
		{denyOnly, "2001:db8:bad:1::1", false},
		{denyOnly, "2001:db8:bae::1", true},
		{denyOnly, "::ffff:203.0.113.9", false},
		{denyOnly, "", false},
		{both, "10.9.9.9", true},
		{both, "10.1.2.3", false}, // deny wins
		{both, "10.2.3.4", false},
		{both, "10.2.3.5", true},
		{both, "11.0.0.1", false},
		{mapped, "198.51.100.77", true},
		{mapped, "198.51.101.1", false},
		{everyone, "127.0.0.1", false},
		{everyone, "::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.config+"/"+tt.ip, func(t *testing.T) {
			t.Parallel()
			p := policytest.MustBuild(t, Kind, tt.config)
			ex := &policy.Exchange{}
			if tt.ip != "" {
				ex.ClientIP = netip.MustParseAddr(tt.ip)
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = "10.0.0.1:1234" // never consulted
			r.Header.Set("X-Forwarded-For", "10.0.0.1")
			res := policytest.Serve(p, r, ex, nil)
			if res.Reached != tt.allowed {
				t.Errorf("reached = %v, want %v", res.Reached, tt.allowed)
			}
			if tt.allowed {
				if res.Err != nil {
					t.Errorf("err = %v", res.Err)
				}
				return
			}
			pe := policytest.PolicyError(res.Err)
			if pe == nil || pe.Status != http.StatusForbidden || pe.Code != "ip_denied" {
				t.Errorf("err = %v, want 403 ip_denied", res.Err)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ config, want string }{
		{`{}`, "allow or deny is required"},
		{`{"allow": []}`, "allow or deny is required"},
		{`{"alow": ["10.0.0.0/8"]}`, `unknown field "alow"`},
		{`{"allow": ["10.0.0.0/33"]}`, `allow[0]: "10.0.0.0/33" is not an IP address or CIDR range`},
		{`{"deny": ["1.2.3.4", "example.com"]}`, `deny[1]: "example.com" is not`},
		{`{"allow": ["10.0.0.1/8"]}`, `did you mean "10.0.0.0/8"`},
		{`{"allow": ["fe80::1%eth0"]}`, "zoned"},
		{`{"allow": ["::ffff:0:0/64"]}`, `did you mean "::/64"`},
		{`{"allow": "10.0.0.0/8"}`, "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.config, func(t *testing.T) {
			t.Parallel()
			_, err := policytest.Build(Kind, tt.config)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build(%s) = %v, want an error containing %q", tt.config, err, tt.want)
			}
		})
	}
}

func TestSetMerges(t *testing.T) {
	t.Parallel()
	var ps []netip.Prefix
	for _, s := range []string{"10.0.0.0/9", "10.128.0.0/9", "10.0.0.0/24", "255.255.255.255", "255.255.255.254", "::/1", "8000::/1", "2001:db8::/32"} {
		p, err := ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	s := newSet(ps)
	if len(s.v4) != 2 || len(s.v6) != 1 {
		t.Errorf("v4 %v, v6 %v: want 2 and 1 merged spans", s.v4, s.v6)
	}
	for _, a := range []string{"10.255.255.255", "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::"} {
		if !s.contains(netip.MustParseAddr(a)) {
			t.Errorf("%s not contained", a)
		}
	}
}

func TestKind(t *testing.T) {
	t.Parallel()
	k, ok := policy.Lookup(Kind)
	if !ok || k.Phases != (policy.PhaseRange{Default: policy.Edge, Min: policy.Edge, Max: policy.Authz}) {
		t.Fatalf("registered %v, phases %+v", ok, k.Phases)
	}
}

func TestDocs(t *testing.T) {
	t.Parallel()
	policytest.CheckDocExamples(t, "../../docs/policies/ip_filter.md", Kind)
}

// prefixes builds n distinct /24 (IPv4) and /48 (IPv6) ranges.
func prefixes(n int) []string {
	out := make([]string, 0, 2*n)
	for i := range n {
		j := 2 * i // every other range, so nothing merges and the search has depth
		out = append(out, fmt.Sprintf("%d.%d.%d.0/24", 11+j/65536, (j/256)%256, j%256))
		out = append(out, fmt.Sprintf("2001:db8:%x::/48", j))
	}
	return out
}

func BenchmarkIPFilter(b *testing.B) {
	for _, n := range []int{10, 10000} {
		list := `"` + strings.Join(prefixes(n), `", "`) + `"`
		p := policytest.MustBuild(b, Kind, `{"allow": [`+list+`], "deny": ["11.0.0.13"]}`)
		h := p.Wrap(policy.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
		for _, ip := range []string{"11.0.6.9", "2001:db8:6::1", "9.9.9.9"} {
			b.Run(fmt.Sprintf("%d_prefixes/%s", 2*n, ip), func(b *testing.B) {
				r := httptest.NewRequest("GET", "/", nil)
				r = r.WithContext(policy.WithExchange(r.Context(), &policy.Exchange{ClientIP: netip.MustParseAddr(ip)}))
				w := httptest.NewRecorder()
				b.ReportAllocs()
				for b.Loop() {
					_ = h.ServeHTTP(w, r)
				}
			})
		}
	}
}

// FuzzSet compares the merged-interval lookup with netip.Prefix.Contains over the same ranges.
// The input is a list of 18-byte records (16 address bytes, a bit count, a family flag) followed
// by the probe address.
func FuzzSet(f *testing.F) {
	rec := func(a netip.Addr, bits byte) []byte {
		b := a.As16()
		fam := byte(6)
		if a.Is4() {
			fam = 4
		}
		return append(b[:], bits, fam)
	}
	f.Add(append(rec(netip.MustParseAddr("10.0.0.0"), 8), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3, 4}...))
	f.Add(append(append(rec(netip.MustParseAddr("2001:db8::"), 32), rec(netip.MustParseAddr("2001:db8:8000::"), 33)...), netip.MustParseAddr("2001:db8:ffff::1").AsSlice()...))
	f.Add(append(rec(netip.MustParseAddr("255.255.255.255"), 32), 255, 255, 255, 255))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ps []netip.Prefix
		for len(data) >= 18+4 {
			var b16 [16]byte
			copy(b16[:], data[:16])
			a := netip.AddrFrom16(b16)
			bits := int(data[16])
			if data[17]%2 == 0 {
				var b4 [4]byte
				copy(b4[:], data[12:16]) // the As16 layout of an IPv4 address
				a = netip.AddrFrom4(b4)
				bits %= 33
			} else {
				bits %= 129
			}
			if p, err := a.Prefix(bits); err == nil {
				ps = append(ps, p)
			}
			data = data[18:]
		}
		var probe netip.Addr
		if len(data) >= 16 {
			probe = netip.AddrFrom16([16]byte(data[:16]))
		} else if len(data) >= 4 {
			probe = netip.AddrFrom4([4]byte(data[:4]))
		} else {
			return
		}
		probe = probe.Unmap()
		want := false
		for _, p := range ps {
			if p.Contains(probe) {
				want = true
			}
		}
		if got := newSet(ps).contains(probe); got != want {
			t.Fatalf("contains(%s) over %v = %v, want %v", probe, ps, got, want)
		}
	})
}

func TestDocExamples(t *testing.T) {
	policytest.CheckDocExamples(t, "../../docs/policies/ip_filter.md", "ip_filter")
}
