package oidc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/limen-gateway/limen/internal/outbound"
)

const (
	// maxFetchBytes caps every response from the provider (discovery, keys, tokens): an
	// endpoint that streams without end must not exhaust memory.
	maxFetchBytes = 1 << 20
	// discoveryTimeout bounds one discovery attempt.
	discoveryTimeout = 10 * time.Second
	// retryAfter is how long a failed discovery is remembered: requests meanwhile get 503 at
	// once instead of each trying again.
	retryAfter = 5 * time.Second
)

// errUnavailable means the provider could not be reached or did not answer usefully.
var errUnavailable = errors.New("the OpenID Connect provider is not available")

// provider is one discovered OpenID Connect provider.
type provider struct {
	*gooidc.Provider
	// endSession is the provider's end_session_endpoint (RP-Initiated Logout 1.0), or "".
	endSession string
}

// discovery finds a provider lazily: on the first request that needs it, never while a config
// is built, so a provider that is down delays neither start-up nor reloads, and validating a
// config sends nothing over the network. A failed attempt is remembered for retryAfter. It
// lives in the Pool, keyed by issuer and trusted CA, so every route and snapshot shares one
// discovered provider and its key cache.
type discovery struct {
	issuer string
	client *http.Client
	log    *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	found atomic.Pointer[provider]

	mu      sync.Mutex
	loading chan struct{} // non-nil while an attempt runs; closed when it ends
	lastErr error
	retryAt time.Time
}

func newDiscovery(issuer string, caPEM []byte, log *slog.Logger) (*discovery, error) {
	client, err := fetchClient(caPEM)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	// go-oidc and x/oauth2 find the client in the context (oauth2.HTTPClient).
	ctx = gooidc.ClientContext(ctx, client)
	return &discovery{issuer: issuer, client: client, log: log, ctx: ctx, cancel: cancel}, nil
}

// get returns the provider, discovering it when needed. It waits for an attempt in progress
// for as long as ctx allows.
func (d *discovery) get(ctx context.Context) (*provider, error) {
	if p := d.found.Load(); p != nil {
		return p, nil
	}
	d.mu.Lock()
	if p := d.found.Load(); p != nil {
		d.mu.Unlock()
		return p, nil
	}
	if d.loading == nil {
		if time.Now().Before(d.retryAt) {
			err := d.lastErr
			d.mu.Unlock()
			return nil, fmt.Errorf("%w: %w", errUnavailable, err)
		}
		if d.ctx.Err() != nil {
			d.mu.Unlock()
			return nil, fmt.Errorf("%w: the policy was closed", errUnavailable)
		}
		d.loading = make(chan struct{})
		d.wg.Add(1)
		go d.discover(d.loading)
	}
	ch := d.loading
	d.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: the request ended while waiting for discovery: %w", errUnavailable, ctx.Err())
	}
	if p := d.found.Load(); p != nil {
		return p, nil
	}
	d.mu.Lock()
	err := d.lastErr
	d.mu.Unlock()
	return nil, fmt.Errorf("%w: %w", errUnavailable, err)
}

// discover runs one attempt detached from the request that started it: a client that goes away
// must not fail the others waiting on the same attempt.
func (d *discovery) discover(done chan struct{}) {
	defer d.wg.Done()
	ctx, cancel := context.WithTimeout(d.ctx, discoveryTimeout)
	defer cancel()
	p, err := d.fetch(ctx)
	d.mu.Lock()
	if err != nil {
		d.lastErr, d.retryAt = err, time.Now().Add(retryAfter)
		d.log.Warn("oidc discovery failed; logins get 503 until the provider answers", "issuer", d.issuer, "err", err)
	} else {
		d.found.Store(p)
	}
	d.loading = nil
	d.mu.Unlock()
	close(done)
}

func (d *discovery) fetch(ctx context.Context) (*provider, error) {
	p, err := gooidc.NewProvider(ctx, d.issuer)
	if err != nil {
		return nil, err
	}
	ep := p.Endpoint()
	if _, err := httpsURL(ep.AuthURL); err != nil {
		return nil, fmt.Errorf("discovery: authorization_endpoint: %w", err)
	}
	if _, err := httpsURL(ep.TokenURL); err != nil {
		return nil, fmt.Errorf("discovery: token_endpoint: %w", err)
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := p.Claims(&extra); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	out := &provider{Provider: p}
	if extra.EndSession != "" {
		if _, err := httpsURL(extra.EndSession); err == nil {
			out.endSession = extra.EndSession
		} else {
			d.log.Warn("oidc: ignoring an end_session_endpoint that is not https", "issuer", d.issuer, "url", extra.EndSession)
		}
	}
	return out, nil
}

// Close stops an attempt in progress and drops idle connections to the provider.
func (d *discovery) Close() error {
	d.cancel()
	d.wg.Wait()
	d.client.CloseIdleConnections()
	return nil
}

// fetchClient never follows redirects (a redirect could hand the gateway another party's keys
// or send the client secret elsewhere), ignores proxy environment variables, speaks https only,
// caps bodies, and trusts the system roots plus the configured CA.
func fetchClient(caPEM []byte) (*http.Client, error) {
	return outbound.New(outbound.Options{
		CA:                  caPEM,
		TLSHandshakeTimeout: 5 * time.Second,
		Timeout:             15 * time.Second,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		HTTPSOnly:           true,
		Refusing:            "talk to the provider",
		MaxBody:             maxFetchBytes,
	})
}
