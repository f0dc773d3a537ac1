package concurrency

import (
	"errors"
	"fmt"
	"time"

	"github.com/limen-gateway/limen/policy"
)

// Config is the configuration of the concurrency_limit policy: at most Max requests in flight
// per key, with an optional short queue, for load shedding.
type Config struct {
	// Max is the most requests in flight per key at once. Required.
	Max int `json:"max"`
	// Key is what is limited: route (default: the route as a whole), consumer (each consumer
	// separately) or client_ip.
	Key string `json:"key,omitempty"`
	// Queue is how many requests may wait for a slot when all are taken. Default 0: shed at once.
	Queue int `json:"queue,omitempty"`
	// QueueTimeout bounds the wait in the queue. Default 1s when Queue is set.
	QueueTimeout *policy.Duration `json:"queue_timeout,omitempty"`
}

// Validate checks the numbers and fills defaults.
func (c *Config) Validate() error {
	if c.Max <= 0 {
		return errors.New("max must be positive")
	}
	switch c.Key {
	case "":
		c.Key = "route"
	case "route", "consumer", "client_ip":
	default:
		return fmt.Errorf("key %q: want route, consumer or client_ip", c.Key)
	}
	if c.Queue < 0 {
		return errors.New("queue must not be negative")
	}
	if c.QueueTimeout == nil {
		d := policy.Duration(time.Second)
		c.QueueTimeout = &d
	}
	if c.Queue > 0 && c.QueueTimeout.D() <= 0 {
		return errors.New("queue_timeout must be positive when queue is set")
	}
	if c.QueueTimeout.D() > time.Minute {
		return errors.New("queue_timeout above 1m holds connections longer than any client waits")
	}
	return nil
}
