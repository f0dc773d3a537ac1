// Package config decodes Limen's YAML configuration strictly (unknown keys are errors with file
// and line), applies defaults and validates it without touching sockets or files other than the
// ones it reads. It has no behaviour beyond that: runtime turns a Config into a running snapshot.
package config

import "encoding/json"

// Config is the whole document.
type Config struct {
	// Listeners are the sockets Limen serves traffic on.
	Listeners []Listener `json:"listeners"`
	// Server holds request-hygiene and lifecycle settings shared by all listeners.
	Server Server `json:"server"`
	// Admin configures the admin API; nil disables it.
	Admin *Admin `json:"admin,omitempty"`
	// Ops is an optional unauthenticated listener for /healthz, /readyz and /metrics.
	Ops *Ops `json:"ops,omitempty"`
	// Upstreams are named pools of backend targets.
	Upstreams map[string]*Upstream `json:"upstreams,omitempty"`
	// Policies are named policy instances shared by every route that references them with use:.
	Policies map[string]*PolicySpec `json:"policies,omitempty"`
	// Routes map requests to a terminal (an upstream or a fixed response) through policies.
	Routes []*Route `json:"routes"`
	// Consumers are the known API clients and their credentials.
	Consumers []*Consumer `json:"consumers,omitempty"`
	// State configures shared state for several nodes (Redis). Without it state is in memory.
	State *State `json:"state,omitempty"`
	// Plans are usage plans (free, pro, ...): rate limits and calendar quotas that apply to
	// every consumer on the plan, wherever a route has a plan policy.
	Plans map[string]*Plan `json:"plans,omitempty"`
	// Usage meters requests per consumer for billing.
	Usage *Usage `json:"usage,omitempty"`
	// Logging configures the process log and the access log.
	Logging Logging `json:"logging"`
}

// Listener is one socket.
type Listener struct {
	// Name identifies the listener; routes bind to listeners by name.
	Name string `json:"name"`
	// Addr is host:port to bind, e.g. ":8080" or "127.0.0.1:8081".
	Addr string `json:"addr"`
	// Protocols enabled: http1, h2 (needs tls), h2c (cleartext HTTP/2, opt-in). Default [http1, h2].
	Protocols []string `json:"protocols,omitempty"`
	// TLS enables TLS termination.
	TLS *ListenerTLS `json:"tls,omitempty"`
	// Timeouts bound header reads and idle keep-alive connections.
	Timeouts ListenerTimeouts `json:"timeouts"`
	// MaxHeaderBytes caps the request line plus headers. Default 64KiB.
	MaxHeaderBytes ByteSize `json:"max_header_bytes,omitempty"`
	// ClientIP says where the client address comes from.
	ClientIP ClientIP `json:"client_ip"`
}

// ListenerTLS configures TLS termination.
type ListenerTLS struct {
	// Certificates are chosen by SNI (the certificate's names); the first is the default.
	Certificates []Certificate `json:"certificates"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `json:"min_version,omitempty"`
	// ClientAuth asks clients for certificates (mutual TLS) on every name of this listener.
	ClientAuth *ClientAuth `json:"client_auth,omitempty"`
}

// Certificate is a PEM certificate chain and its private key.
type Certificate struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
	// ClientAuth overrides the listener's client_auth for the names this certificate serves
	// (chosen by SNI). A request whose Host is served with other client-auth settings than
	// the SNI its connection came in on gets 421.
	ClientAuth *ClientAuth `json:"client_auth,omitempty"`
}

// ClientAuth configures client certificates (mutual TLS).
type ClientAuth struct {
	// CA is a PEM bundle of the certificate authorities client certificates must chain to.
	CA string `json:"ca,omitempty"`
	// Mode is require (default: no handshake without a valid certificate), optional (a
	// certificate, when sent, must be valid; the mtls policy decides per route) or none (turns
	// a listener-wide setting off for one certificate's names).
	Mode string `json:"mode,omitempty"`
}

// ListenerTimeouts are connection-level timeouts. Whole-request read/write timeouts are never set:
// they would cut streams; routes bound their own time instead.
type ListenerTimeouts struct {
	// ReadHeader bounds reading a request's headers. Default 10s.
	ReadHeader Duration `json:"read_header,omitempty"`
	// Idle bounds a keep-alive connection waiting for its next request. Default 120s.
	Idle Duration `json:"idle,omitempty"`
}

// ClientIP says where the client address comes from and which peers are trusted to say so.
type ClientIP struct {
	// Source is peer (default), x_forwarded_for, forwarded or proxy_protocol.
	Source string `json:"source,omitempty"`
	// TrustedProxies are CIDRs whose forwarding headers are believed; headers are read right to
	// left past them. Forwarding and identity headers from other peers are stripped.
	TrustedProxies []string `json:"trusted_proxies,omitempty"`
}

// Server holds hygiene and lifecycle settings.
type Server struct {
	// MergeSlashes merges repeated slashes in paths before routing. Default true.
	MergeSlashes *bool `json:"merge_slashes,omitempty"`
	// EscapedSlashes is reject (default: %2F and %5C in a path get 400) or keep.
	EscapedSlashes string `json:"escaped_slashes,omitempty"`
	// StripHeaders are extra identity headers removed from every request from an untrusted peer,
	// besides the built-in set.
	StripHeaders []string `json:"strip_headers,omitempty"`
	// ShutdownDelay is how long /readyz fails before listeners close on SIGTERM. Default 0s.
	ShutdownDelay Duration `json:"shutdown_delay,omitempty"`
	// Grace is how long in-flight requests may take to finish on shutdown. Default 30s.
	Grace Duration `json:"grace,omitempty"`
	// DrainTimeout bounds how long a replaced snapshot's long-lived requests keep it. Default 30s.
	DrainTimeout Duration `json:"drain_timeout,omitempty"`
	// IdentityHeaders name the headers that carry the authenticated caller upstream. Clients'
	// copies of them are removed from every request, on every route.
	IdentityHeaders IdentityHeaders `json:"identity_headers"`
}

// IdentityHeaders name the headers the proxy sets upstream for an authenticated request.
type IdentityHeaders struct {
	// ConsumerID carries the consumer name or token subject. Default X-Consumer-ID.
	ConsumerID string `json:"consumer_id,omitempty"`
	// ConsumerGroups carries the consumer's groups, comma-separated. Default X-Consumer-Groups.
	ConsumerGroups string `json:"consumer_groups,omitempty"`
	// ConsumerPlan carries the consumer's plan. Default X-Consumer-Plan.
	ConsumerPlan string `json:"consumer_plan,omitempty"`
	// Credential carries the id of the credential used (an API key's id, a username), never
	// the secret. Default X-Credential-Identifier.
	Credential string `json:"credential,omitempty"`
	// Anonymous is set to "true" when the caller was let in as an anonymous consumer. Default
	// X-Anonymous-Consumer.
	Anonymous string `json:"anonymous,omitempty"`
}

// Admin configures the admin API listener.
type Admin struct {
	// Addr is the admin listener's address. Default 127.0.0.1:9901.
	Addr string `json:"addr,omitempty"`
	// Tokens authenticate admin callers; required when Addr is not loopback.
	Tokens []AdminToken `json:"tokens,omitempty"`
	// FileRoot is the directory file paths in a pushed config must stay under. Default: the
	// config file's directory.
	FileRoot string `json:"file_root,omitempty"`
}

// AdminToken is one admin credential. Token accepts ${ENV}.
type AdminToken struct {
	Name  string `json:"name"`
	Token string `json:"token" secret:"true" env:"true"`
	// Scope is read or write.
	Scope string `json:"scope"`
}

// Ops is an unauthenticated listener for probes and scrapers.
type Ops struct {
	Addr string `json:"addr"`
}

// Upstream is a pool of targets.
type Upstream struct {
	// Targets are static backends. Exactly one of Targets or Discovery is set.
	Targets []Target `json:"targets,omitempty"`
	// Discovery finds targets dynamically.
	Discovery *Discovery `json:"discovery,omitempty"`
	// Balance is round_robin (default, smooth weighted), least_request (power of two choices by
	// requests in flight), ewma (power of two choices by peak-EWMA latency × requests in flight)
	// or hash (consistent hashing on hash_on with bounded loads).
	Balance string `json:"balance,omitempty"`
	// HashOn is what the hash balancer hashes: header:NAME, cookie:NAME, client_ip, consumer or
	// path. Required with balance: hash, and only allowed with it.
	HashOn string `json:"hash_on,omitempty"`
	// HashBalanceFactor bounds a hash target's load to this many times the pool's average
	// before its keys spill to the next target on the ring; at least 1. Default 1.25 (hash only).
	HashBalanceFactor float64 `json:"hash_balance_factor,omitempty"`
	// EWMADecay is the time constant of the ewma balancer's latency average. Default 10s (ewma
	// only).
	EWMADecay Duration `json:"ewma_decay,omitempty"`
	// Health configures active and passive health checking.
	Health Health `json:"health"`
	// Timeouts for connecting and waiting for response headers.
	Timeouts UpstreamTimeouts `json:"timeouts"`
	// Retries configures retrying failed attempts on other targets.
	Retries *Retries `json:"retries,omitempty"`
	// TLS configures TLS to the targets (https URLs).
	TLS *UpstreamTLS `json:"tls,omitempty"`
	// Protocol is http1 (default), h2 (HTTP/2 over TLS) or h2c (cleartext HTTP/2, e.g. gRPC).
	Protocol string `json:"protocol,omitempty"`
	// MaxConnsPerTarget caps connections to each target; 0 means no cap.
	MaxConnsPerTarget int `json:"max_conns_per_target,omitempty"`
	// CircuitBreaker stops sending requests to the pool while it keeps failing, for every route
	// that uses it.
	CircuitBreaker *UpstreamBreaker `json:"circuit_breaker,omitempty"`
}

// UpstreamBreaker is a circuit breaker in front of an upstream pool (the same thresholds as the
// circuit_breaker policy), with another upstream as the fallback while it is open.
type UpstreamBreaker struct {
	// ConsecutiveFailures trips the breaker after this many failures in a row. Default 5 when
	// failure_ratio is not set.
	ConsecutiveFailures int `json:"consecutive_failures,omitempty"`
	// FailureRatio (0 < r <= 1) trips it when this share of the window's requests failed.
	FailureRatio float64 `json:"failure_ratio,omitempty"`
	// MinRequests is the volume a window needs before failure_ratio applies. Default 20.
	MinRequests int `json:"min_requests,omitempty"`
	// Window is the rolling window of failure_ratio. Default 10s.
	Window Duration `json:"window,omitempty"`
	// SlowCall counts a response whose headers take longer than this as a failure.
	SlowCall Duration `json:"slow_call,omitempty"`
	// OpenFor is how long the breaker stays open before probing. Default 30s.
	OpenFor Duration `json:"open_for,omitempty"`
	// HalfOpenRequests is how many probes run while half-open. Default 1.
	HalfOpenRequests int `json:"half_open_requests,omitempty"`
	// FailureStatuses count as failures. Default [500, 502, 503, 504].
	FailureStatuses []int `json:"failure_statuses,omitempty"`
	// Fallback names another upstream that serves the pool's routes while the breaker is open
	// (through its own targets, without its own breaker). Default: 503 circuit_open.
	Fallback string `json:"fallback,omitempty"`
}

// Target is one static backend.
type Target struct {
	// URL is scheme://host:port with scheme http or https and no path.
	URL string `json:"url"`
	// Weight is the relative share of traffic. Default 1.
	Weight int `json:"weight,omitempty"`
}

// Discovery finds targets dynamically.
type Discovery struct {
	DNS *DNSDiscovery `json:"dns,omitempty"`
}

// DNSDiscovery resolves DNS records periodically: the A/AAAA records of Name (each address a
// target on Port), or the SRV records of SRV. Exactly one of Name and SRV is set.
type DNSDiscovery struct {
	// Name is the DNS name whose A/AAAA records are the targets. Needs Port.
	Name string `json:"name,omitempty"`
	// Port is the port of every target resolved from Name.
	Port int `json:"port,omitempty"`
	// SRV is a DNS name whose SRV records (RFC 2782) give the targets' hosts, ports, priorities
	// and weights, e.g. _http._tcp.users.internal. The lowest priority group with an address is
	// used; weight 0 counts as 1. Exclusive with Name and Port.
	SRV string `json:"srv,omitempty"`
	// Scheme is http (default) or https.
	Scheme string `json:"scheme,omitempty"`
	// Refresh is the re-resolution interval. Default 30s.
	Refresh Duration `json:"refresh,omitempty"`
	// Resolver is an optional DNS server host:port to ask instead of the system resolver.
	Resolver string `json:"resolver,omitempty"`
}

// Health groups the health-check settings.
type Health struct {
	Active  *ActiveHealth  `json:"active,omitempty"`
	Passive *PassiveHealth `json:"passive,omitempty"`
}

// ActiveHealth probes each target periodically.
type ActiveHealth struct {
	// Path is requested with GET. Default /healthz.
	Path string `json:"path,omitempty"`
	// Interval between probes. Default 5s.
	Interval Duration `json:"interval,omitempty"`
	// Timeout for one probe. Default 1s.
	Timeout Duration `json:"timeout,omitempty"`
	// HealthyAfter consecutive successes mark a target healthy. Default 2.
	HealthyAfter int `json:"healthy_after,omitempty"`
	// UnhealthyAfter consecutive failures mark a target unhealthy. Default 3.
	UnhealthyAfter int `json:"unhealthy_after,omitempty"`
	// ExpectStatus lists the statuses counted as healthy. Default any 2xx or 3xx.
	ExpectStatus []int `json:"expect_status,omitempty"`
}

// PassiveHealth ejects targets that fail real traffic.
type PassiveHealth struct {
	// ConsecutiveFailures (connect failures, 502/503/504) eject a target. Default 5.
	ConsecutiveFailures int `json:"consecutive_failures,omitempty"`
	// EjectFor is how long an ejected target stays out. Default 30s.
	EjectFor Duration `json:"eject_for,omitempty"`
	// MaxEjectionPercent caps the share of the pool ejected at once. Default 50.
	MaxEjectionPercent int `json:"max_ejection_percent,omitempty"`
}

// UpstreamTimeouts bound the transport.
type UpstreamTimeouts struct {
	// Connect bounds dialing (and the TLS handshake). Default 2s.
	Connect Duration `json:"connect,omitempty"`
	// ResponseHeader bounds waiting for response headers after the request was written. Default 15s.
	ResponseHeader Duration `json:"response_header,omitempty"`
	// Idle closes keep-alive connections unused this long. Default 90s.
	Idle Duration `json:"idle,omitempty"`
}

// Retries configures retrying failed attempts.
type Retries struct {
	// Attempts is the number of retries after the first try. Default 0.
	Attempts int `json:"attempts"`
	// On lists retryable outcomes: connect_failure, timeout, reset, and status codes. Default
	// [connect_failure].
	On []string `json:"on,omitempty"`
	// Budget caps retries as a share of requests in flight, e.g. "20%". Default 20%.
	Budget Percent `json:"budget,omitempty"`
	// Backoff is the base of the jittered exponential backoff between tries. Default 25ms.
	Backoff Duration `json:"backoff,omitempty"`
	// MaxBody is the largest request body buffered so it can be replayed. Default 64KiB.
	MaxBody ByteSize `json:"max_body,omitempty"`
}

// UpstreamTLS configures TLS to targets.
type UpstreamTLS struct {
	// CA is a PEM bundle of CAs trusted for the targets; default the system pool.
	CA string `json:"ca,omitempty"`
	// Cert and Key are a client certificate for mTLS.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// ServerName overrides the SNI and the name verified.
	ServerName string `json:"server_name,omitempty"`
}

// Route maps matching requests to a terminal.
type Route struct {
	// Name identifies the route in logs, metrics and the admin API.
	Name string `json:"name"`
	// Listeners the route binds to; all listeners when empty.
	Listeners []string `json:"listeners,omitempty"`
	// Match says which requests the route takes.
	Match Match `json:"match"`
	// Priority breaks ties between routes that match the same request; higher wins.
	Priority int `json:"priority,omitempty"`
	// Rewrite changes the path or host sent upstream.
	Rewrite *Rewrite `json:"rewrite,omitempty"`
	// PreserveHost sends the client's Host upstream instead of the target's.
	PreserveHost bool `json:"preserve_host,omitempty"`
	// Upstream names the pool to proxy to. Exactly one of Upstream, Split or Respond is set.
	Upstream string `json:"upstream,omitempty"`
	// Split sends the route's traffic to several upstreams: rules first (blue-green, beta
	// users), then weights (canary), optionally sticky per user.
	Split *Split `json:"split,omitempty"`
	// Respond answers with a fixed response.
	Respond *Respond `json:"respond,omitempty"`
	// Timeout bounds the time until response headers, retries included. Default 30s.
	Timeout Duration `json:"timeout,omitempty"`
	// StreamIdleTimeout bounds silence on a streaming response or upgraded connection. Default 5m.
	StreamIdleTimeout Duration `json:"stream_idle_timeout,omitempty"`
	// Retries adjusts the upstream's retry policy for this route.
	Retries *RouteRetries `json:"retries,omitempty"`
	// Upgrades lists the protocols a client may upgrade to. Default [websocket]; [] allows none.
	// h2c is always refused.
	Upgrades *[]string `json:"upgrades,omitempty"`
	// Policies run in phase order, then in this order within a phase.
	Policies []*PolicySpec `json:"policies,omitempty"`
}

// Match holds a route's matchers; every one set must match.
type Match struct {
	// Hosts are exact names or *.example.com wildcards; any host when empty.
	Hosts []string `json:"hosts,omitempty"`
	// Path is a template: /users/{id}, /files/{path...} (a tail, matching /files too). Default /{path...}.
	Path string `json:"path,omitempty"`
	// Methods lists allowed methods; GET implies HEAD. Any method (but CONNECT and TRACE) when empty.
	Methods []string `json:"methods,omitempty"`
	// Headers must be present with exactly these values.
	Headers map[string]string `json:"headers,omitempty"`
	// Query parameters must be present with exactly these values.
	Query map[string]string `json:"query,omitempty"`
}

// Rewrite changes the request before it goes upstream.
type Rewrite struct {
	// StripPrefix removes a leading path prefix (on a segment boundary).
	StripPrefix string `json:"strip_prefix,omitempty"`
	// AddPrefix prepends a path prefix.
	AddPrefix string `json:"add_prefix,omitempty"`
	// Path replaces the path with a template filled from the captured params (re-escaped).
	Path string `json:"path,omitempty"`
	// Host replaces the Host sent upstream.
	Host string `json:"host,omitempty"`
}

// Respond is a fixed response terminal.
type Respond struct {
	// Status defaults to 200.
	Status  int               `json:"status,omitempty"`
	Body    string            `json:"body,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// RouteRetries adjusts retries for one route.
type RouteRetries struct {
	// NonIdempotent allows retrying POST, PATCH and other non-idempotent methods.
	NonIdempotent bool `json:"non_idempotent,omitempty"`
	// PerTryTimeout bounds each attempt until response headers.
	PerTryTimeout Duration `json:"per_try_timeout,omitempty"`
	// Attempts overrides the upstream's retry count when set.
	Attempts *int `json:"attempts,omitempty"`
}

// PolicySpec is one policy entry: either a reference to a shared instance (Use) or an inline
// instance of one kind. In YAML it is a map with one kind key and optional phase/id:
//
//   - cors: { allow_origins: [...] }
//     phase: edge
//   - use: public-cors
type PolicySpec struct {
	// Use names a shared instance under top-level policies.
	Use string `json:"-"`
	// Kind is the policy kind ("cors") and Config its raw config.
	Kind   string          `json:"-"`
	Config json.RawMessage `json:"-"`
	// Phase moves the instance within its kind's allowed range.
	Phase string `json:"-"`
	// ID overrides the generated instance id of an inline instance.
	ID string `json:"-"`
}

// Logging configures logs.
type Logging struct {
	// Level is debug, info (default), warn or error.
	Level string `json:"level,omitempty"`
	// Access configures the access log.
	Access AccessLog `json:"access"`
	// Audit configures the audit trail of security events.
	Audit AuditLog `json:"audit"`
}

// AuditLog configures the audit trail: authentication failures, authorization denials, admin
// API calls and reloads, as JSON lines, apart from the access log.
type AuditLog struct {
	// Output is off (default), stdout, stderr or a file path (appended to, created 0600).
	Output string `json:"output,omitempty"`
	// PerSecond bounds authentication failures and authorization denials recorded per second
	// (each kind separately, bursts of ten times that); the rest are counted in the next line.
	// Default 20.
	PerSecond float64 `json:"per_second,omitempty"`
}

// AccessLog configures the per-request log.
type AccessLog struct {
	// Format is json (the only format).
	Format string `json:"format,omitempty"`
	// Output is stdout (default), stderr, a file path, or off.
	Output string `json:"output,omitempty"`
	// Buffer is how many lines may wait for the writer before new ones are dropped. Default 4096.
	Buffer int `json:"buffer,omitempty"`
}

// Consumer is a known API client: authentication policies map a verified credential to it.
type Consumer struct {
	// Name is the stable id, sent upstream as X-Consumer-ID and used in logs and counters.
	Name string `json:"name"`
	// Groups are used by authorization rules (require, acl) and sent upstream.
	Groups []string `json:"groups,omitempty"`
	// Plan names the consumer's usage plan.
	Plan string `json:"plan,omitempty"`
	// Metadata is free-form.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Credentials are the consumer's secrets; several of a kind let keys rotate without downtime.
	Credentials Credentials `json:"credentials"`
}

// Credentials are a consumer's secrets. None is stored in plain text in the config.
type Credentials struct {
	// APIKeys are API keys, as SHA-256 digests (limen hash-key) or from the environment.
	APIKeys []APIKeyCredential `json:"api_keys,omitempty"`
	// BasicAuth are username and password-hash pairs.
	BasicAuth []BasicCredential `json:"basic_auth,omitempty"`
	// Certificates identify the consumer by a client certificate the listener verified.
	Certificates []CertificateCredential `json:"certificates,omitempty"`
}

// CertificateCredential matches a verified client certificate. Exactly one field is set.
type CertificateCredential struct {
	// Fingerprint is the hex SHA-256 of the certificate (DER): one certificate exactly.
	Fingerprint string `json:"fingerprint,omitempty"`
	// URI matches a URI subject alternative name, e.g. a SPIFFE id "spiffe://acme/billing".
	URI string `json:"uri,omitempty"`
	// DNS matches a DNS subject alternative name.
	DNS string `json:"dns,omitempty"`
	// Email matches an email subject alternative name.
	Email string `json:"email,omitempty"`
	// CommonName matches the subject's CN (legacy; prefer a SAN).
	CommonName string `json:"common_name,omitempty"`
}

// APIKeyCredential is one API key. Exactly one of SHA256 and Key is set.
type APIKeyCredential struct {
	// ID names the credential in logs and upstream (X-Credential-Identifier); never the key.
	ID string `json:"id,omitempty"`
	// SHA256 is the hex SHA-256 digest of the key, as `limen hash-key` prints it.
	SHA256 string `json:"sha256,omitempty" secret:"true"`
	// Key is the key itself, allowed only from the environment: key: "${ACME_API_KEY}".
	Key string `json:"key,omitempty" secret:"true" env:"only"`
}

// BasicCredential is one basic-auth login.
type BasicCredential struct {
	// Username is unique across consumers.
	Username string `json:"username"`
	// PasswordHash is a bcrypt ($2a$, $2b$, $2y$) or argon2id ($argon2id$v=19$...) hash.
	PasswordHash string `json:"password_hash" secret:"true"`
}

// State configures where shared state lives.
type State struct {
	// Redis shares rate-limit counters (and later usage and caches) between nodes.
	Redis *Redis `json:"redis,omitempty"`
}

// Redis is a Redis server or a Redis Cluster-compatible endpoint.
type Redis struct {
	// URL is redis://[user:password@]host:port/db, or rediss:// for TLS. Accepts ${ENV}. With
	// cluster, it names the seed nodes: redis://host1:6379?addr=host2:6379&addr=host3:6379
	// (no database: a Redis Cluster has only database 0).
	URL string `json:"url" secret:"true" env:"true"`
	// Cluster speaks the Redis Cluster protocol: the client learns the slot map from the seeds
	// and follows MOVED/ASK redirects. Every key a policy uses in one command or script carries
	// the same hash tag, so each runs on one node.
	Cluster bool `json:"cluster,omitempty"`
	// PoolSize bounds connections per node. Default 10 per CPU.
	PoolSize int `json:"pool_size,omitempty"`
	// Timeout bounds every command, dial included. Default 100ms: a request never waits on
	// Redis longer, and then its policy applies on_error.
	Timeout Duration `json:"timeout,omitempty"`
	// KeyPrefix starts every key. Default "limen:". No braces: they choose Redis Cluster slots.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Failures in a row open the breaker in front of Redis. Default 3.
	Failures int `json:"failures,omitempty"`
	// OpenFor is how long the breaker stays open before one probe. Default 2s.
	OpenFor Duration `json:"open_for,omitempty"`
}

// Split divides a route's traffic between upstreams.
type Split struct {
	// Rules are tried in order; the first whose headers and cookies all match picks its
	// upstream.
	Rules []SplitRule `json:"rules,omitempty"`
	// Weights split the remaining traffic (canary: 95 and 5).
	Weights []SplitWeight `json:"weights"`
	// Sticky keeps a user on one side of the weighted split: consumer, client_ip,
	// header:NAME or cookie:NAME (a cookie Limen sets itself when absent). Changing the weights
	// moves only the users in the share that changed.
	Sticky string `json:"sticky,omitempty"`
}

// SplitRule sends matching requests to one upstream.
type SplitRule struct {
	// Headers must all equal the given values.
	Headers map[string]string `json:"headers,omitempty"`
	// Cookies must all equal the given values.
	Cookies map[string]string `json:"cookies,omitempty"`
	// Upstream receives the matching requests.
	Upstream string `json:"upstream"`
}

// SplitWeight is one side of a weighted split.
type SplitWeight struct {
	// Upstream receives this share.
	Upstream string `json:"upstream"`
	// Weight is the share, relative to the others (0 stops sending new traffic).
	Weight int `json:"weight"`
}

// Plan is a usage plan.
type Plan struct {
	// RateLimits are smooth rates (GCRA), applied per consumer.
	RateLimits []PlanRate `json:"rate_limits,omitempty"`
	// Quotas are request budgets per calendar day or month, per consumer.
	Quotas []PlanQuota `json:"quotas,omitempty"`
}

// PlanRate is one rate of a plan.
type PlanRate struct {
	// Requests admitted per Per.
	Requests int `json:"requests"`
	// Per is the period, e.g. 1s or 1m.
	Per Duration `json:"per"`
	// Burst is how many requests may arrive at once. Default Requests.
	Burst int `json:"burst,omitempty"`
}

// PlanQuota is a calendar budget: it resets at the start of each day or month in TimeZone.
type PlanQuota struct {
	// Requests is the budget per period.
	Requests int `json:"requests"`
	// Period is day or month.
	Period string `json:"period"`
	// TimeZone is the IANA zone the calendar is read in ("Europe/Paris"). Default UTC.
	TimeZone string `json:"time_zone,omitempty"`
}

// Usage configures usage metering: per consumer, route, status class and hour, the requests and
// bytes in and out, exported by GET /admin/usage. Totals go to state.redis when it is configured
// (every node counts into the same totals), and stay in memory otherwise.
type Usage struct {
	// FlushInterval is how often counts move to the store; a crash loses at most this much.
	// Default 10s.
	FlushInterval Duration `json:"flush_interval,omitempty"`
	// Retention is how long totals are kept. Default 840h (35 days).
	Retention Duration `json:"retention,omitempty"`
}
