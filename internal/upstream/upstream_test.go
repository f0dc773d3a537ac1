package upstream

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/limen-gateway/limen/internal/refpool"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func specs(_ testing.TB, weights ...int) []TargetSpec {
	var out []TargetSpec
	for i, w := range weights {
		u, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", 1000*(i+1)))
		out = append(out, TargetSpec{URL: u, Weight: w})
	}
	return out
}

func TestSmoothWeightedRoundRobin(t *testing.T) {
	u, err := New(Options{Name: "u", Targets: specs(t, 5, 1, 1)}, &refpool.Pool{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	var seq []string
	counts := map[string]int{}
	for range 7 {
		tg, err := u.Pick(nil)
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, tg.Key)
		counts[tg.Key]++
	}
	if counts["http://127.0.0.1:1000"] != 5 || counts["http://127.0.0.1:2000"] != 1 {
		t.Fatalf("counts %v", counts)
	}
	// Smooth: the heavy target never runs more than 3 times in a row for weights 5,1,1 (nginx's a a b a c a a).
	if seq[0] != seq[1] || seq[2] == seq[0] {
		t.Fatalf("sequence not interleaved: %v", seq)
	}
}

func TestPickSkipsTriedAndUnavailable(t *testing.T) {
	u, _ := New(Options{Name: "u", Targets: specs(t, 1, 1), Balance: "least_request"}, &refpool.Pool{}, nil)
	defer u.Close()
	a, _ := u.Pick(nil)
	b, err := u.Pick([]*Target{a})
	if err != nil || b == a {
		t.Fatalf("tried target picked again: %v %v", b, err)
	}
	if _, err := u.Pick([]*Target{a, b}); err != ErrNoHealthyTarget {
		t.Fatalf("want ErrNoHealthyTarget, got %v", err)
	}
	a.Begin()
	a.Begin()
	for range 10 {
		if got, _ := u.Pick(nil); got != b {
			t.Fatal("least_request picked the busier target")
		}
	}
}

func TestPassiveEjectionRespectsMaxPercent(t *testing.T) {
	u, _ := New(Options{Name: "u", Targets: specs(t, 1, 1, 1, 1),
		Passive: &PassiveCheck{ConsecutiveFailures: 2, EjectFor: time.Hour, MaxEjectionPercent: 50}}, &refpool.Pool{}, nil)
	defer u.Close()
	ts := *u.targets.Load()
	for _, tg := range ts {
		for range 2 {
			tg.Begin()
			u.End(tg, Failure, time.Millisecond)
		}
	}
	ejected := 0
	for _, st := range u.Status().Targets {
		if st.EjectedUntil != nil {
			ejected++
		}
	}
	if ejected != 2 {
		t.Fatalf("%d of 4 ejected, want 2 (50%%)", ejected)
	}
}

func TestStateSurvivesRebuild(t *testing.T) {
	pool := &refpool.Pool{}
	o := Options{Name: "u", Targets: specs(t, 1), Passive: &PassiveCheck{ConsecutiveFailures: 1, EjectFor: time.Hour, MaxEjectionPercent: 100}}
	a, _ := New(o, pool, nil)
	tg := (*a.targets.Load())[0]
	tg.Begin()
	a.End(tg, Failure, time.Millisecond)
	b, _ := New(o, pool, nil) // the reload builds the new one before releasing the old
	a.Close()
	defer b.Close()
	if b.Status().Targets[0].EjectedUntil == nil {
		t.Fatal("ejection lost across a rebuild")
	}
	if b.Transport() != a.Transport() {
		t.Fatal("transport (keep-alive connections) not shared across a rebuild")
	}
}

func TestActiveHealth(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(503)
		}
	}))
	defer srv.Close()
	su, _ := url.Parse(srv.URL)
	u, _ := New(Options{Name: "u", Targets: []TargetSpec{{URL: su, Weight: 1}},
		Active: &ActiveCheck{Path: "/h", Interval: 20 * time.Millisecond, Timeout: time.Second, HealthyAfter: 1, UnhealthyAfter: 1}}, &refpool.Pool{}, nil)
	defer u.Close()
	wait := func(want error) {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := u.Pick(nil); err == want {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for Pick error %v", want)
	}
	healthy.Store(false)
	wait(ErrNoHealthyTarget)
	healthy.Store(true)
	wait(nil)
}

func TestRetryBudget(t *testing.T) {
	u, _ := New(Options{Name: "u", Targets: specs(t, 1), Retry: RetryPolicy{Budget: 0.2}}, &refpool.Pool{}, nil)
	defer u.Close()
	granted := 0
	for range 10 {
		if u.TryRetry() {
			granted++
		}
	}
	if granted != 3 {
		t.Fatalf("granted %d retries with nothing in flight, want the floor of 3", granted)
	}
}

// dnsServer is a DNS server on 127.0.0.1 whose answers tests can change. Without zone data it
// answers every A query with addrs; with it (setZone) it answers A and SRV queries from the zone
// and NXDOMAIN for names it does not hold. With servfail set it answers SERVFAIL.
type dnsServer struct {
	conn     net.PacketConn
	mu       sync.Mutex
	addrs    [][4]byte
	zone     *zone
	servfail bool
}

// zone is the data setZone installs: the A records and SRV records of names.
type zone struct {
	a    map[string][][4]byte
	srv  map[string][]dnsmessage.SRVResource
	fail map[string]bool // names answered with SERVFAIL
}

// has reports whether the zone holds name, possibly with no records of a type (NOERROR and an
// empty answer); other names are NXDOMAIN.
func (z *zone) has(name string) bool {
	_, a := z.a[name]
	_, s := z.srv[name]
	return a || s
}

func startDNS(t *testing.T, addrs ...[4]byte) *dnsServer {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{conn: pc, addrs: addrs}
	go d.serve()
	t.Cleanup(func() { pc.Close() })
	return d
}

func (d *dnsServer) set(addrs ...[4]byte) { d.mu.Lock(); d.addrs = addrs; d.mu.Unlock() }

func (d *dnsServer) setZone(z *zone) { d.mu.Lock(); d.zone = z; d.mu.Unlock() }

func (d *dnsServer) setServfail(on bool) { d.mu.Lock(); d.servfail = on; d.mu.Unlock() }

func (d *dnsServer) addr() string { return d.conn.LocalAddr().String() }

// srv is an SRV record for zone data.
func srv(priority, weight, port uint16, target string) dnsmessage.SRVResource {
	return dnsmessage.SRVResource{Priority: priority, Weight: weight, Port: port, Target: dnsmessage.MustNewName(target)}
}

func (d *dnsServer) serve() {
	buf := make([]byte, 512)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		msg, err := d.answer(h.ID, q)
		if err != nil {
			continue
		}
		d.conn.WriteTo(msg, from)
	}
}

func (d *dnsServer) answer(id uint16, q dnsmessage.Question) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	name := q.Name.String()
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
	hdr := dnsmessage.Header{ID: id, Response: true, Authoritative: true}
	switch {
	case d.servfail || d.zone != nil && d.zone.fail[name]:
		hdr.RCode = dnsmessage.RCodeServerFailure
	case d.zone != nil && !d.zone.has(name):
		hdr.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, hdr)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	if hdr.RCode == dnsmessage.RCodeSuccess {
		switch {
		case q.Type == dnsmessage.TypeA && d.zone == nil:
			for _, a := range d.addrs {
				b.AResource(rh, dnsmessage.AResource{A: a})
			}
		case q.Type == dnsmessage.TypeA:
			for _, a := range d.zone.a[name] {
				b.AResource(rh, dnsmessage.AResource{A: a})
			}
		case q.Type == dnsmessage.TypeSRV && d.zone != nil:
			for _, s := range d.zone.srv[name] {
				b.SRVResource(rh, s)
			}
		}
	}
	return b.Finish()
}

func TestDNSDiscovery(t *testing.T) {
	d := startDNS(t, [4]byte{127, 0, 0, 1})
	u, err := New(Options{Name: "u", DNS: &DNSOptions{Name: "svc.test.", Port: 9000, Refresh: 30 * time.Millisecond, Resolver: d.conn.LocalAddr().String()}}, &refpool.Pool{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got := u.Status().Targets; len(got) != 1 || got[0].URL != "http://127.0.0.1:9000" {
		t.Fatalf("targets %v", got)
	}
	d.set([4]byte{127, 0, 0, 2}, [4]byte{127, 0, 0, 3})
	deadline := time.Now().Add(5 * time.Second)
	for len(u.Status().Targets) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("targets not refreshed: %v", u.Status().Targets)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkPick(b *testing.B) {
	for _, bal := range []string{"round_robin", "least_request"} {
		b.Run(bal, func(b *testing.B) {
			u, _ := New(Options{Name: "u", Balance: bal, Targets: specs(nil, 1, 2, 3, 1, 1, 1, 1, 1, 1, 1)}, &refpool.Pool{}, nil)
			defer u.Close()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := u.Pick(nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
