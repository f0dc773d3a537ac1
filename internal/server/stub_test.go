package server

import (
	"net"
	"time"
)

// netConnStub satisfies net.Conn for guard unit tests and benchmarks.
type netConnStub struct{}

func (netConnStub) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (netConnStub) Write(p []byte) (int, error)      { return len(p), nil }
func (netConnStub) Close() error                     { return nil }
func (netConnStub) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (netConnStub) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (netConnStub) SetDeadline(time.Time) error      { return nil }
func (netConnStub) SetReadDeadline(time.Time) error  { return nil }
func (netConnStub) SetWriteDeadline(time.Time) error { return nil }
