//go:build tools

// Package tools pins dependencies that packages in this module are about to use.
package tools

import (
	_ "github.com/MicahParks/jwkset"
	_ "github.com/MicahParks/keyfunc/v3"
	_ "github.com/coder/websocket"
	_ "github.com/coreos/go-oidc/v3/oidc"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.uber.org/goleak"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/crypto/bcrypt"
	_ "golang.org/x/net/dns/dnsmessage"
	_ "golang.org/x/oauth2"
	_ "golang.org/x/sync/singleflight"
	_ "golang.org/x/time/rate"
)
