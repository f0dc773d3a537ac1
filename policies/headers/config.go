package headers

// Config is the configuration of both request_headers and response_headers. Operations run in a
// fixed order, whatever their order in YAML: remove, then set, then add.
type Config struct {
	// Set replaces each named header with the value (a placeholder template such as
	// "{request.header.X-Tenant}" or "{consumer}"). A value that renders empty removes the
	// header instead, so a client can never supply a header the gateway meant to fill.
	Set map[string]string `json:"set,omitempty"`
	// Add appends the value to each named header, keeping values already present. A value that
	// renders empty adds nothing.
	Add map[string]string `json:"add,omitempty"`
	// Remove deletes the named headers (case-insensitive).
	Remove []string `json:"remove,omitempty"`
}

// forbidden explains why a header may not be set or added: hop-by-hop fields (RFC 9110 §7.6.1)
// are removed by the proxy before the request goes upstream and by net/http before the response
// goes out, and the framing and Host fields belong to the gateway.
var forbidden = map[string]string{
	"Connection":          "is a hop-by-hop header (RFC 9110 §7.6.1): the gateway removes it, so setting it would do nothing",
	"Keep-Alive":          "is a hop-by-hop header (RFC 9110 §7.6.1): the gateway removes it, so setting it would do nothing",
	"Proxy-Connection":    "is a hop-by-hop header (RFC 9110 §7.6.1): the gateway removes it, so setting it would do nothing",
	"Proxy-Authenticate":  "is a hop-by-hop header (RFC 9110 §7.6.1): the gateway removes it, so setting it would do nothing",
	"Proxy-Authorization": "is a hop-by-hop header (RFC 9110 §7.6.1): the gateway removes it, so setting it would do nothing",
	"Te":                  "is a hop-by-hop header (RFC 9110 §7.6.1): the gateway removes it, so setting it would do nothing",
	"Trailer":             "is a hop-by-hop header (RFC 9110 §7.6.1): the gateway removes it, so setting it would do nothing",
	"Transfer-Encoding":   "is a hop-by-hop header (RFC 9110 §7.6.1): the gateway removes it, so setting it would do nothing",
	"Upgrade":             "is a hop-by-hop header (RFC 9110 §7.6.1): upgrades are allowed per route with upgrades:",
	"Host":                "cannot be changed by a header policy: use the route's rewrite.host (or preserve_host)",
	"Content-Length":      "is computed by the gateway from the body; setting it would corrupt the message framing",
}

// Validate checks header names, templates and conflicting operations.
func (c *Config) Validate() error {
	_, err := c.compile()
	return err
}
