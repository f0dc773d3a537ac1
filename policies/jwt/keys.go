package jwt

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	gojwt "github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/limen-gateway/limen/internal/outbound"
	"github.com/limen-gateway/limen/policy"
)

// maxFetchBytes caps a JWK Set or discovery document: an endpoint that streams without end must
// not exhaust memory.
const maxFetchBytes = 1 << 20

// errKeysUnavailable means no key set was ever loaded (the endpoint has been down since start).
var errKeysUnavailable = errors.New("the issuer's keys are not available yet")

// keySet finds the key that verifies a token.
type keySet interface {
	keyfunc(ctx context.Context) gojwt.Keyfunc
}

// remoteKeys is a JWK Set fetched over HTTPS and kept fresh in the background. It lives in the
// Pool, keyed by URL and fetch settings, so every route and every snapshot shares one cache and
// a reload neither refetches nor drops it.
type remoteKeys struct {
	cancel context.CancelFunc
	done   chan struct{}
	kf     atomic.Pointer[keyfunc.Keyfunc]
}

type remoteOptions struct {
	issuer, jwksURL string // jwksURL empty: discover it from the issuer
	ca              string
	refresh         time.Duration
	log             *slog.Logger
}

func (o remoteOptions) poolKey() string {
	return "jwks|" + o.issuer + "|" + o.jwksURL + "|" + o.ca + "|" + o.refresh.String()
}

// fetchClient never follows redirects (a redirect to an attacker's key set would be trusted),
// ignores proxy environment variables, speaks https only (keys fetched in clear text could be
// swapped on the way), caps bodies, and trusts the system roots plus the configured CA.
func fetchClient(caFile string) (*http.Client, error) {
	var ca []byte
	if caFile != "" {
		var err error
		if ca, err = outbound.ReadCA(caFile); err != nil {
			return nil, err
		}
	}
	return outbound.New(outbound.Options{
		CA:                  ca,
		TLSHandshakeTimeout: 5 * time.Second,
		Timeout:             15 * time.Second,
		MaxIdleConnsPerHost: 2,
		HTTPSOnly:           true,
		Refusing:            "fetch keys",
		MaxBody:             maxFetchBytes,
	})
}

func newRemoteKeys(o remoteOptions) (*remoteKeys, error) {
	client, err := fetchClient(o.ca)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &remoteKeys{cancel: cancel, done: make(chan struct{})}
	go k.load(ctx, client, o)
	return k, nil
}

// load discovers (when asked) and fetches the key set, retrying with backoff until it works or
// the pool releases the set. Requests meanwhile get 503: the gateway starts and keeps serving
// other routes while an issuer is down.
func (k *remoteKeys) load(ctx context.Context, client *http.Client, o remoteOptions) {
	defer close(k.done)
	backoff := time.Second
	for failures := 0; ; failures++ {
		// Each attempt gets its own context: a failed one must take its refresh goroutine
		// with it.
		attempt, cancel := context.WithCancel(ctx)
		kf, err := k.fetch(attempt, client, o)
		if err != nil {
			cancel()
		} else {
			defer cancel()
		}
		if err == nil {
			k.kf.Store(&kf)
			if failures > 0 {
				o.log.Info("jwks loaded", "issuer", o.issuer)
			}
			<-ctx.Done()
			return
		}
		if failures == 0 || failures%10 == 0 {
			o.log.Warn("jwks unavailable; requests needing it get 503 until it loads", "issuer", o.issuer, "err", err, "attempts", failures+1)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

func (k *remoteKeys) fetch(ctx context.Context, client *http.Client, o remoteOptions) (keyfunc.Keyfunc, error) {
	jwksURL := o.jwksURL
	if jwksURL == "" {
		var err error
		if jwksURL, err = discover(ctx, client, o.issuer); err != nil {
			return nil, err
		}
	}
	storage, err := jwkset.NewStorageFromHTTP(jwksURL, jwkset.HTTPClientStorageOptions{
		Client:          client,
		Ctx:             ctx,
		HTTPTimeout:     10 * time.Second,
		RefreshInterval: o.refresh,
		RefreshErrorHandler: func(_ context.Context, err error) {
			o.log.Warn("jwks refresh failed; keeping the last good key set", "url", jwksURL, "err", err)
		},
	})
	if err != nil {
		return nil, err
	}
	store, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: map[string]jwkset.Storage{jwksURL: storage},
		// A token naming an unknown key id (a rotation) refetches the set at most once a
		// minute; other such tokens meanwhile fail at once instead of waiting.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(time.Minute), 1),
		RateLimitWaitMax:  time.Second,
	})
	if err != nil {
		return nil, err
	}
	return keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: store, UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
}

// discover reads jwks_uri from the issuer's OpenID Connect discovery document and checks that
// the document speaks for that issuer (OpenID Connect Discovery 1.0 §4.3).
func discover(ctx context.Context, client *http.Client, issuer string) (string, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery: %s answered %d", u, resp.StatusCode)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("discovery: the document is for issuer %q, not %q", doc.Issuer, issuer)
	}
	if err := httpsURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("discovery: jwks_uri: %w", err)
	}
	return doc.JWKSURI, nil
}

func (k *remoteKeys) keyfunc(ctx context.Context) gojwt.Keyfunc {
	kf := k.kf.Load()
	if kf == nil {
		return func(*gojwt.Token) (any, error) { return nil, errKeysUnavailable }
	}
	return (*kf).KeyfuncCtx(ctx)
}

// Close stops the background refresh.
func (k *remoteKeys) Close() error {
	k.cancel()
	<-k.done
	return nil
}

// localKeys are public keys read from files at build time.
type localKeys struct {
	byKID map[string]crypto.PublicKey
	all   gojwt.VerificationKeySet
}

func loadLocalKeys(baseDir string, files []policy.File) (*localKeys, error) {
	lk := &localKeys{byKID: map[string]crypto.PublicKey{}}
	for _, f := range files {
		data, err := os.ReadFile(f.Path(baseDir))
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		if err := lk.add(data); err != nil {
			return nil, fmt.Errorf("keys: %s: %w", f, err)
		}
	}
	if len(lk.all.Keys) == 0 {
		return nil, errors.New("keys: no public key found")
	}
	return lk, nil
}

func (lk *localKeys) add(data []byte) error {
	if block, _ := pem.Decode(data); block != nil {
		for rest := data; ; {
			block, rest = pem.Decode(rest)
			if block == nil {
				return nil
			}
			if block.Type != "PUBLIC KEY" {
				return fmt.Errorf("PEM block %q: want PUBLIC KEY (a private key does not belong in the gateway)", block.Type)
			}
			key, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return err
			}
			lk.all.Keys = append(lk.all.Keys, key)
		}
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(data, &set); err != nil || len(set.Keys) == 0 {
		return errors.New("neither PEM nor a JWK Set")
	}
	for _, m := range set.Keys {
		if m.D != "" || m.K != "" {
			return errors.New("the JWK Set holds private or symmetric keys; give the gateway public keys only")
		}
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return err
		}
		key := jwk.Key()
		if m.KID != "" {
			lk.byKID[m.KID] = key
		}
		lk.all.Keys = append(lk.all.Keys, key)
	}
	return nil
}

func (lk *localKeys) keyfunc(context.Context) gojwt.Keyfunc {
	return func(t *gojwt.Token) (any, error) {
		if kid, ok := t.Header["kid"].(string); ok {
			if key, ok := lk.byKID[kid]; ok {
				return key, nil
			}
		}
		return lk.all, nil
	}
}
