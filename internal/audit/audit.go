// Package audit writes Limen's audit trail: an append-only log of security events, separate from
// the access log. Authentication failures and authorization denials (rate-limited, so an attack
// cannot flood the trail; what was left out is counted in the next line), admin API calls with
// who, from where and what changed, and reloads with their outcome.
//
// Events go through a bounded queue to one writer goroutine. Request-path events never block a
// request: when the queue is full they are counted as dropped. Admin and reload events wait for
// room, briefly, because they are rare and matter more.
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Event kinds.
const (
	AuthnFailure = "authn_failure"
	AuthzDenied  = "authz_denied"
	Admin        = "admin"
	Reload       = "reload"
)

// Event is one audit line. Fields that do not apply are left out.
type Event struct {
	Time  time.Time `json:"time"`
	Event string    `json:"event"`

	// Request events.
	RequestID string `json:"request_id,omitempty"`
	ClientIP  string `json:"client_ip,omitempty"`
	Method    string `json:"method,omitempty"`
	Host      string `json:"host,omitempty"`
	Path      string `json:"path,omitempty"` // never the query: it may carry credentials
	Route     string `json:"route,omitempty"`
	Policy    string `json:"policy,omitempty"`
	Code      string `json:"code,omitempty"`
	Status    int    `json:"status,omitempty"`
	Principal string `json:"principal,omitempty"`
	// Suppressed counts events of this kind left out by the rate limit since the last one
	// written.
	Suppressed uint64 `json:"suppressed,omitempty"`

	// Admin and reload events.
	Actor   string   `json:"actor,omitempty"` // the admin token's name
	Remote  string   `json:"remote,omitempty"`
	Action  string   `json:"action,omitempty"` // "PUT /admin/config"
	Source  string   `json:"source,omitempty"` // what triggered a reload: file, sighup, admin, start
	Result  string   `json:"result,omitempty"` // ok, rejected, unauthorized, forbidden, noop
	OldHash string   `json:"old_hash,omitempty"`
	NewHash string   `json:"new_hash,omitempty"`
	Changed []string `json:"changed,omitempty"` // "routes/users: changed", "consumers/acme: added"
	Errors  []string `json:"errors,omitempty"`
}

// Log is an open audit trail.
type Log struct {
	w      io.Writer
	closer io.Closer
	queue  chan []byte
	done   chan struct{}
	once   sync.Once
	mu     sync.RWMutex // senders share it; Close takes it alone to close the queue
	closed bool

	limits     map[string]*limit
	dropped    atomic.Uint64
	writeError atomic.Uint64
}

type limit struct {
	l          *rate.Limiter
	suppressed atomic.Uint64
}

// Options configure a Log.
type Options struct {
	// Output is stdout, stderr or a file path (appended to, created 0600 if missing).
	Output string
	// PerSecond bounds request-path events (authentication failures and authorization denials,
	// each separately) per second, with bursts of ten times that. Default 20.
	PerSecond float64
}

// Open opens the trail and starts its writer.
func Open(o Options) (*Log, error) {
	var w io.Writer
	var c io.Closer
	switch o.Output {
	case "", "stdout":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(o.Output, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open audit log: %w", err)
		}
		w, c = f, f
	}
	if o.PerSecond <= 0 {
		o.PerSecond = 20
	}
	burst := int(o.PerSecond * 10)
	l := &Log{w: w, closer: c, queue: make(chan []byte, 1024), done: make(chan struct{}),
		limits: map[string]*limit{
			AuthnFailure: {l: rate.NewLimiter(rate.Limit(o.PerSecond), burst)},
			AuthzDenied:  {l: rate.NewLimiter(rate.Limit(o.PerSecond), burst)},
		}}
	go l.run()
	return l, nil
}

func (l *Log) run() {
	defer close(l.done)
	for line := range l.queue {
		if _, err := l.w.Write(line); err != nil {
			l.writeError.Add(1)
		}
	}
}

// Request records a request-path event (AuthnFailure or AuthzDenied) unless its kind is over
// its rate, in which case it is counted and reported with the next one written. It never blocks.
func (l *Log) Request(e Event) {
	if l == nil {
		return
	}
	lim := l.limits[e.Event]
	if lim != nil {
		if !lim.l.Allow() {
			lim.suppressed.Add(1)
			return
		}
		e.Suppressed = lim.suppressed.Swap(0)
	}
	l.send(e, false)
}

// Record records an admin or reload event, waiting briefly for room in the queue.
func (l *Log) Record(e Event) {
	if l == nil {
		return
	}
	l.send(e, true)
}

func (l *Log) send(e Event, wait bool) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	line = append(line, '\n')
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Add(1)
		return
	}
	if !wait {
		select {
		case l.queue <- line:
		default:
			l.dropped.Add(1)
		}
		return
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case l.queue <- line:
	case <-t.C:
		l.dropped.Add(1)
	}
}

// Dropped returns how many events were lost to a full queue, a closed log or a failed write.
func (l *Log) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load() + l.writeError.Load()
}

// Close writes what is queued and closes the file. It is idempotent.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	var err error
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.queue)
		l.mu.Unlock()
		<-l.done
		if l.closer != nil {
			err = l.closer.Close()
		}
	})
	return err
}
