// Package all is the standard distribution of policy kinds: importing it registers every kind
// below. cmd/limen imports it; an embedder that wants a smaller binary imports the kinds it needs.
//
// Adding a policy kind means one blank import here and nothing else outside its own folder.
package all

import (
	_ "github.com/limen-gateway/limen/policies/acl"           // acl
	_ "github.com/limen-gateway/limen/policies/apikey"        // api_key
	_ "github.com/limen-gateway/limen/policies/basicauth"     // basic_auth
	_ "github.com/limen-gateway/limen/policies/bodylimit"     // body_limit
	_ "github.com/limen-gateway/limen/policies/breaker"       // circuit_breaker
	_ "github.com/limen-gateway/limen/policies/concurrency"   // concurrency_limit
	_ "github.com/limen-gateway/limen/policies/cors"          // cors
	_ "github.com/limen-gateway/limen/policies/forwardauth"   // forward_auth
	_ "github.com/limen-gateway/limen/policies/headers"       // request_headers, response_headers
	_ "github.com/limen-gateway/limen/policies/introspection" // oauth2_introspection
	_ "github.com/limen-gateway/limen/policies/ipfilter"      // ip_filter
	_ "github.com/limen-gateway/limen/policies/jwt"           // jwt
	_ "github.com/limen-gateway/limen/policies/mirror"        // mirror
	_ "github.com/limen-gateway/limen/policies/mtls"          // mtls
	_ "github.com/limen-gateway/limen/policies/oidc"          // oidc
	_ "github.com/limen-gateway/limen/policies/plan"          // plan
	_ "github.com/limen-gateway/limen/policies/ratelimit"     // rate_limit
	_ "github.com/limen-gateway/limen/policies/require"       // require
)
