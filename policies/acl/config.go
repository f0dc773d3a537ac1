package acl

import "errors"

// Config is the configuration of the acl policy: which consumers may use a route. Entries
// are consumer names or "group:<name>". Deny wins over allow; a non-empty allow list admits
// only its members.
type Config struct {
	// Allow lists the consumers and groups that may use the route; when set, no one else may.
	Allow []string `json:"allow,omitempty"`
	// Deny lists the consumers and groups that may not, even when Allow lists them.
	Deny []string `json:"deny,omitempty"`
}

// Validate checks that the policy says something.
func (c *Config) Validate() error {
	if len(c.Allow) == 0 && len(c.Deny) == 0 {
		return errors.New("allow or deny is required")
	}
	for _, list := range [][]string{c.Allow, c.Deny} {
		for _, e := range list {
			if e == "" || e == "group:" {
				return errors.New("an empty entry matches nothing; remove it")
			}
		}
	}
	return nil
}
