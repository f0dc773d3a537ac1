package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
)

// A private reader for the PROXY protocol header (HAProxy, versions 1 and 2), used while
// internal/proxyproto is not available. It reads exactly the header and leaves everything after
// it buffered for the connection.

var (
	errProxyHeader = errors.New("malformed PROXY protocol header")
	proxyV2Sig     = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// readProxyHeader reads one PROXY header. ok is false for a valid header that carries no
// address (v1 UNKNOWN, v2 LOCAL or an unsupported family): the TCP peer stands.
func readProxyHeader(br *bufio.Reader) (src netip.AddrPort, ok bool, err error) {
	peek, err := br.Peek(12)
	if err != nil {
		return src, false, errProxyHeader
	}
	if bytes.Equal(peek, proxyV2Sig) {
		return readProxyV2(br)
	}
	if !bytes.HasPrefix(peek, []byte("PROXY ")) {
		return src, false, errProxyHeader
	}
	// v1: at most 107 bytes including CRLF.
	var line []byte
	for len(line) < 107 {
		c, err := br.ReadByte()
		if err != nil {
			return src, false, errProxyHeader
		}
		line = append(line, c)
		if c == '\n' {
			break
		}
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return src, false, errProxyHeader
	}
	f := bytes.Split(line[:len(line)-2], []byte(" "))
	if len(f) >= 2 && string(f[1]) == "UNKNOWN" {
		return src, false, nil
	}
	if len(f) != 6 || string(f[1]) != "TCP4" && string(f[1]) != "TCP6" {
		return src, false, errProxyHeader
	}
	// Both addresses must be of the announced family and both ports plain decimal (the spec
	// forbids leading zeros): a header that is not exactly well formed is refused.
	v4 := string(f[1]) == "TCP4"
	a, ok := proxyV1Addr(f[2], v4)
	if !ok {
		return src, false, errProxyHeader
	}
	if _, ok := proxyV1Addr(f[3], v4); !ok {
		return src, false, errProxyHeader
	}
	port, ok := proxyV1Port(f[4])
	if !ok {
		return src, false, errProxyHeader
	}
	if _, ok := proxyV1Port(f[5]); !ok {
		return src, false, errProxyHeader
	}
	return netip.AddrPortFrom(a, port), true, nil
}

func proxyV1Addr(b []byte, v4 bool) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(b))
	return a, err == nil && a.Is4() == v4 && a.Zone() == ""
}

func proxyV1Port(b []byte) (uint16, bool) {
	port, err := strconv.ParseUint(string(b), 10, 16)
	return uint16(port), err == nil && !(len(b) > 1 && b[0] == '0')
}

func readProxyV2(br *bufio.Reader) (src netip.AddrPort, ok bool, err error) {
	var hdr [16]byte
	if _, err := ioReadFull(br, hdr[:]); err != nil {
		return src, false, errProxyHeader
	}
	if hdr[12]>>4 != 2 {
		return src, false, errProxyHeader
	}
	cmd, fam := hdr[12]&0x0f, hdr[13]
	n := int(binary.BigEndian.Uint16(hdr[14:]))
	if cmd > 1 || n > 2048 {
		return src, false, errProxyHeader
	}
	body := make([]byte, n)
	if _, err := ioReadFull(br, body); err != nil {
		return src, false, errProxyHeader
	}
	if cmd == 0 { // LOCAL: a health check from the proxy itself
		return src, false, nil
	}
	switch fam {
	case 0x11: // TCP over IPv4
		if n < 12 {
			return src, false, errProxyHeader
		}
		a := netip.AddrFrom4([4]byte(body[0:4]))
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[8:10])), true, nil
	case 0x21: // TCP over IPv6
		if n < 36 {
			return src, false, errProxyHeader
		}
		a := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[32:34])), true, nil
	}
	return src, false, nil // UDP, unix sockets, unspecified: keep the TCP peer
}

func ioReadFull(br *bufio.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := br.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// proxiedConn is a connection whose PROXY header was read: reads drain what was buffered with
// it, and RemoteAddr is the address the proxy reported.
type proxiedConn struct {
	net.Conn
	br     *bufio.Reader
	remote net.Addr
}

func (c *proxiedConn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.remote }
