package runtime

import (
	"testing"
	"time"

	"github.com/limen-gateway/limen/internal/refpool"
	"github.com/limen-gateway/limen/internal/upstream"
)

func TestUpstreamOptionsBalancers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		want       upstream.Options
	}{
		{"hash", `{targets: [{url: "http://127.0.0.1:1"}], balance: hash, hash_on: "header:X-User", hash_balance_factor: 1.5}`,
			upstream.Options{Balance: upstream.Hash, HashOn: "header:X-User", HashBalanceFactor: 1.5}},
		{"hash default factor", `{targets: [{url: "http://127.0.0.1:1"}], balance: hash, hash_on: client_ip}`,
			upstream.Options{Balance: upstream.Hash, HashOn: "client_ip", HashBalanceFactor: upstream.DefaultHashBalanceFactor}},
		{"ewma", `{targets: [{url: "http://127.0.0.1:1"}], balance: ewma, ewma_decay: 2s}`,
			upstream.Options{Balance: upstream.EWMA, EWMADecay: 2 * time.Second}},
		{"ewma default decay", `{targets: [{url: "http://127.0.0.1:1"}], balance: ewma}`,
			upstream.Options{Balance: upstream.EWMA, EWMADecay: upstream.DefaultEWMADecay}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := parse(t, "upstreams:\n  u: "+c.yaml+"\n")
			o, err := upstreamOptions("u", d.Config.Upstreams["u"])
			if err != nil {
				t.Fatal(err)
			}
			if o.Balance != c.want.Balance || o.HashOn != c.want.HashOn || o.HashBalanceFactor != c.want.HashBalanceFactor || o.EWMADecay != c.want.EWMADecay {
				t.Fatalf("options %+v, want %+v", o, c.want)
			}
			up, err := upstream.New(o, &refpool.Pool{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			up.Close()
		})
	}
}

func TestUpstreamOptionsDNSDiscovery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		want       upstream.DNSOptions
	}{
		{"srv", `{discovery: {dns: {srv: _http._tcp.users.internal, scheme: https, refresh: 10s, resolver: "127.0.0.1:5353"}}}`,
			upstream.DNSOptions{SRV: "_http._tcp.users.internal", Scheme: "https", Refresh: 10 * time.Second, Resolver: "127.0.0.1:5353"}},
		{"a/aaaa", `{discovery: {dns: {name: users.internal, port: 9001}}}`,
			upstream.DNSOptions{Name: "users.internal", Port: 9001, Scheme: "http", Refresh: 30 * time.Second}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d := parse(t, "upstreams:\n  u: "+c.yaml+"\n")
			o, err := upstreamOptions("u", d.Config.Upstreams["u"])
			if err != nil {
				t.Fatal(err)
			}
			if o.DNS == nil || *o.DNS != c.want {
				t.Fatalf("dns options %+v, want %+v", o.DNS, c.want)
			}
		})
	}
}
