//go:build tools

// Package tools pins dependencies that packages in this module are about to use.
package tools
import (
 _ "go.yaml.in/yaml/v3"
 _ "github.com/fsnotify/fsnotify"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "go.uber.org/goleak"
 _ "github.com/google/go-cmp/cmp"
 _ "golang.org/x/time/rate"
 _ "golang.org/x/sync/singleflight"
 _ "github.com/coder/websocket"
 _ "golang.org/x/net/dns/dnsmessage"
)
