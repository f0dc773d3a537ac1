package upstream

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/limen-gateway/limen/internal/httpx"
	"github.com/limen-gateway/limen/policy"
)

// Balancer names, as written in the config's balance key.
const (
	RoundRobin   = "round_robin"
	LeastRequest = "least_request"
	EWMA         = "ewma"
	Hash         = "hash"
)

// Defaults for the latency-aware and hashing balancers.
const (
	DefaultEWMADecay         = 10 * time.Second
	DefaultHashBalanceFactor = 1.25
)

// filter says whether a target may take this attempt: available (weighted, healthy, not
// ejected) and not already tried by this request. It is a value, not a closure, so passing it
// around the pickers allocates nothing.
type filter struct {
	now   int64 // wall clock, for ejections
	tried []*Target
}

func (f filter) ok(t *Target) bool {
	if !t.available(f.now) {
		return false
	}
	for _, x := range f.tried {
		if x == t {
			return false
		}
	}
	return true
}

// epoch anchors the monotonic clock of the latency estimates (time.Time.Sub uses the monotonic
// reading, so a wall-clock step never ages or rejuvenates an estimate).
var epoch = time.Now()

func monotonic(now time.Time) int64 { return max(int64(now.Sub(epoch)), 1) }

// latency is a target's peak-EWMA response latency, after Finagle's PeakEwma and Linkerd's
// (tower's) load::PeakEwma: an exponentially weighted moving average of the time to response
// headers that decays with the time since the last observation (weight exp(-Δt/τ)), except that
// an observation slower than the average replaces it at once, so a target that turns slow loses
// traffic immediately and wins it back only gradually. It lives in the target's pooled health
// state, so reloads and DNS refreshes keep it.
//
// It is two atomics rather than one locked pair: the value is updated with compare-and-swap
// and the stamp stored after it. A reader that sees a new value with an old stamp (or the
// reverse) decays it by a few microseconds more or less, which an estimate can afford; a lock
// shared by every request to a target could not be.
type latency struct {
	value atomic.Uint64 // float64 bits: nanoseconds
	stamp atomic.Int64  // monotonic nanoseconds of the last observation; 0 until the first one
}

// observe folds one attempt's latency in. A failed attempt never lowers the estimate: a refused
// connection answers fast, and must not make a broken target look attractive.
func (l *latency) observe(now int64, rtt, tau float64, failed bool) {
	for {
		bits := l.value.Load()
		prev := math.Float64frombits(bits)
		st := l.stamp.Load()
		next := rtt
		switch {
		case st == 0 && !failed, rtt > prev:
			// The first observation, or a peak: take it as it is.
		case failed:
			next = prev
		default:
			w := math.Exp(-float64(max(now-st, 0)) / tau)
			next = prev*w + rtt*(1-w)
		}
		if l.value.CompareAndSwap(bits, math.Float64bits(next)) {
			l.stamp.Store(now)
			return
		}
	}
}

// current returns the estimate decayed to now (Finagle decays on read as if a zero-latency
// response had arrived, so a target that stopped getting traffic because it was slow is
// eventually tried again and can show it has recovered); ok is false before the first
// observation.
func (l *latency) current(now int64, tau float64) (est float64, ok bool) {
	st := l.stamp.Load()
	if st == 0 {
		return 0, false
	}
	v := math.Float64frombits(l.value.Load())
	if d := now - st; d > 0 {
		v *= math.Exp(-float64(d) / tau)
	}
	return v, true
}

// pickEWMA chooses by power of two choices on cost = latency × (in flight + 1) / weight. Two
// independent random samples among the targets that pass f; the cheaper one wins.
func (u *Upstream) pickEWMA(ts []*Target, f filter, mono int64) (*Target, error) {
	n := len(ts)
	if n == 0 {
		return nil, ErrNoHealthyTarget
	}
	a := sample(ts, rand.IntN(n), f, nil)
	if a == nil {
		return nil, ErrNoHealthyTarget
	}
	if n == 1 {
		return a, nil
	}
	b := sample(ts, rand.IntN(n), f, a)
	if b == nil {
		return a, nil
	}
	la, oka := a.state.rtt.current(mono, u.tau)
	lb, okb := b.state.rtt.current(mono, u.tau)
	if !oka || !okb {
		// A target without an observation yet gets a neutral latency, the mean of those that
		// have one, so it takes traffic at once without being flooded before it answers.
		neutral := u.neutralLatency(ts, f, mono)
		if !oka {
			la = neutral
		}
		if !okb {
			lb = neutral
		}
	}
	ca := la * float64(a.state.inflight.Load()+1) / float64(a.Weight)
	cb := lb * float64(b.state.inflight.Load()+1) / float64(b.Weight)
	if cb < ca {
		return b, nil
	}
	return a, nil
}

// sample returns the first target from start on (wrapping) that passes f and is not skip.
func sample(ts []*Target, start int, f filter, skip *Target) *Target {
	n := len(ts)
	for i := range n {
		j := start + i
		if j >= n {
			j -= n
		}
		if t := ts[j]; t != skip && f.ok(t) {
			return t
		}
	}
	return nil
}

// neutralLatency is the mean current estimate of the available targets that have one, or 1ns
// when none has (every cost is then in flight per weight: least request).
func (u *Upstream) neutralLatency(ts []*Target, f filter, mono int64) float64 {
	sum, n := 0.0, 0
	for _, t := range ts {
		if !t.available(f.now) {
			continue
		}
		if l, ok := t.state.rtt.current(mono, u.tau); ok {
			sum += l
			n++
		}
	}
	if n == 0 {
		return 1
	}
	return sum / float64(n)
}

// hashOn is what a hash balancer hashes.
type hashOn uint8

const (
	hashNone hashOn = iota
	hashHeader
	hashCookie
	hashClientIP
	hashConsumer
	hashPath
)

// hashSpec is a parsed hash_on: the source and, for headers and cookies, the name.
type hashSpec struct {
	on   hashOn
	name string
}

// parseHashOn reads a hash_on value: header:NAME, cookie:NAME, client_ip, consumer or path.
func parseHashOn(s string) (hashSpec, error) {
	switch s {
	case "client_ip":
		return hashSpec{on: hashClientIP}, nil
	case "consumer":
		return hashSpec{on: hashConsumer}, nil
	case "path":
		return hashSpec{on: hashPath}, nil
	}
	kind, name, found := strings.Cut(s, ":")
	if found && name != "" && httpx.ValidToken(name) {
		switch kind {
		case "header":
			return hashSpec{on: hashHeader, name: http.CanonicalHeaderKey(name)}, nil
		case "cookie":
			return hashSpec{on: hashCookie, name: name}, nil
		}
	}
	return hashSpec{}, fmt.Errorf("hash_on %q: want header:NAME, cookie:NAME, client_ip, consumer or path", s)
}

// Key is a request's hash key for a hash-balanced upstream. The zero Key means "no key": the
// request is balanced round robin.
type Key struct {
	h  uint64
	ok bool
}

// KeyOf returns the Key for a hash input, as RequestKey would compute it.
func KeyOf(s string) Key { return Key{h: hash64(s), ok: true} }

// RequestKey returns the hash key of r for this upstream's hash_on, or the zero Key when the
// upstream does not balance by hash or the request lacks the input (no such header or cookie,
// an anonymous caller). It allocates nothing.
func (u *Upstream) RequestKey(r *http.Request, ex *policy.Exchange) Key {
	switch u.hash.on {
	case hashHeader:
		if vs := r.Header[u.hash.name]; len(vs) > 0 && vs[0] != "" {
			return KeyOf(vs[0])
		}
	case hashCookie:
		if v, ok := cookieValue(r.Header["Cookie"], u.hash.name); ok {
			return KeyOf(v)
		}
	case hashClientIP:
		var ip netip.Addr
		if ex != nil {
			ip = ex.ClientIP
		}
		if !ip.IsValid() {
			if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
				ip = ap.Addr()
			}
		}
		if ip.IsValid() {
			b := ip.Unmap().As16()
			return Key{h: hash64(b[:]), ok: true}
		}
	case hashConsumer:
		if ex != nil && ex.Principal.Identified() && ex.Principal.ID != "" {
			return KeyOf(ex.Principal.ID)
		}
	case hashPath:
		return KeyOf(r.URL.Path)
	}
	return Key{}
}

// cookieValue finds a cookie in Cookie header lines without allocating (http.Request.Cookie
// parses every cookie into a new slice). Surrounding double quotes are removed (RFC 6265 §4.1.1).
func cookieValue(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, found := strings.Cut(part, "=")
			if !found || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if v != "" {
				return v, true
			}
		}
	}
	return "", false
}

// hash64 is FNV-1a finished with splitmix64's mixer: stable across processes and versions (so
// gateway replicas map a key to the same target), allocation-free, and well spread in every bit
// (plain FNV-1a is weak in the high bits the ring orders by).
func hash64[T string | []byte](s T) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// ring is a consistent-hash ring (Karger et al.; the libketama layout) with virtual nodes in
// proportion to weight. We chose a ring over rendezvous hashing (O(n) per pick, a logarithm per
// target for weights) and Maglev (a lookup table that moves more than 1/n of keys when the set
// changes, and weights only approximately): a ring is O(log n) per pick, moves only the keys of
// the points added or removed, and its clockwise walk is exactly the "next target" that both
// fallback (unavailable or tried) and bounded load ("Consistent Hashing with Bounded Loads",
// Mirrokni, Thorup, Zadimoghaddam, 2018; HAProxy's hash-balance-factor) need. Points come from
// the target's key (scheme://host:port) and the point's index only, so replicas, reloads and DNS
// refreshes build the same ring, and raising a weight adds points without moving the others.
type ring struct {
	ts      []*Target
	points  []uint64 // sorted
	owner   []int32  // index into ts of each point
	members int      // targets with points (a weight of 0 has none)
}

// Ring sizing: pointsPerWeight per unit of weight, scaled down when a pool would exceed
// maxRingPoints (every target with a weight keeps at least one point).
const (
	pointsPerWeight = 160
	maxRingPoints   = 1 << 17
)

func buildRing(ts []*Target) *ring {
	total := 0
	for _, t := range ts {
		total += t.Weight
	}
	scale := 1.0
	if total*pointsPerWeight > maxRingPoints {
		scale = float64(maxRingPoints) / float64(total*pointsPerWeight)
	}
	type point struct {
		h     uint64
		owner int32
	}
	var pts []point
	members := 0
	for i, t := range ts {
		if t.Weight <= 0 {
			continue
		}
		n := max(int(float64(t.Weight*pointsPerWeight)*scale), 1)
		members++
		base := hash64(t.Key)
		for j := range n {
			pts = append(pts, point{mix64(base + uint64(j+1)*0x9e3779b97f4a7c15), int32(i)})
		}
	}
	// Ties (vanishingly rare) are broken by target key, so the ring does not depend on the
	// order DNS returned the addresses in.
	sort.Slice(pts, func(a, b int) bool {
		if pts[a].h != pts[b].h {
			return pts[a].h < pts[b].h
		}
		return ts[pts[a].owner].Key < ts[pts[b].owner].Key
	})
	r := &ring{ts: ts, points: make([]uint64, len(pts)), owner: make([]int32, len(pts)), members: members}
	for i, p := range pts {
		r.points[i], r.owner[i] = p.h, p.owner
	}
	return r
}

// search returns the index of the first point at or after h, wrapping to 0.
func (r *ring) search(h uint64) int {
	lo, hi := 0, len(r.points)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.points[mid] < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.points) {
		return 0
	}
	return lo
}

// seenTargets is how many distinct targets a ring walk remembers (on the stack); larger pools
// still work, the walk only re-checks their targets as it meets their other points.
const seenTargets = 1024

// pickHash walks the ring clockwise from the key's point and takes the first target that passes
// f and is within its load bound; when none is, the first that passes f.
func (u *Upstream) pickHash(r *ring, k Key, f filter) (*Target, error) {
	n := len(r.points)
	if n == 0 {
		return nil, ErrNoHealthyTarget
	}
	var seen [seenTargets / 64]uint64
	distinct := 0
	var first *Target
	load := loadStats{total: -1}
	for i, j := 0, r.search(k.h); i < n; i, j = i+1, j+1 {
		if j == n {
			j = 0
		}
		o := r.owner[j]
		if o < seenTargets {
			if seen[o>>6]&(1<<(o&63)) != 0 {
				continue
			}
			seen[o>>6] |= 1 << (o & 63)
			distinct++
		}
		t := r.ts[o]
		if f.ok(t) {
			if first == nil {
				first = t
			}
			if u.withinBound(r.ts, t, f.now, &load) {
				return t, nil
			}
		}
		if distinct == r.members {
			break
		}
	}
	if first == nil {
		return nil, ErrNoHealthyTarget
	}
	return first, nil
}

// loadStats are the pool's attempts in flight and weight over its available targets, computed
// at most once per pick and only when a candidate is busy.
type loadStats struct {
	total, weight int64
}

// withinBound reports whether t may take one more attempt: its in-flight attempts plus this
// one stay within ceil(c × (pool in flight + 1) × weight / pool weight), the bound of
// "consistent hashing with bounded loads" weighted by target. With c >= 1 some available
// target always has room, so a hot key spills over to the next targets on the ring instead of
// overloading its own.
func (u *Upstream) withinBound(ts []*Target, t *Target, now int64, load *loadStats) bool {
	in := t.state.inflight.Load()
	if in == 0 {
		return true
	}
	if load.total < 0 {
		load.total, load.weight = 0, 0
		for _, x := range ts {
			if x.available(now) {
				load.total += x.state.inflight.Load()
				load.weight += int64(x.Weight)
			}
		}
	}
	if load.weight == 0 {
		return true
	}
	limit := math.Ceil(u.factor * float64(load.total+1) * float64(t.Weight) / float64(load.weight))
	return float64(in+1) <= limit
}
