package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// keepAlive is a client connection that sends one request at a time.
type keepAlive struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAlive {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{t, c, bufio.NewReader(c)}
}

func (k *keepAlive) do(path, extra string) (int, error) {
	k.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(k.c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestApplyKeepsSocketAndSwapsHygiene(t *testing.T) {
	t.Parallel()
	rc := newRecorder()
	spec := baseSpec("a", Hygiene{})
	spec.Addr = freeAddr(t)
	s := startWith(t, rc, spec)
	k := dialKeepAlive(t, spec.Addr)
	if code, err := k.do("/1", "X-Secret: 1\r\n"); code != 200 {
		t.Fatal(code, err)
	}
	spec.Name = "renamed"
	spec.Hygiene.StripHeaders = []string{"X-Secret"}
	if err := s.Apply([]ListenerSpec{spec}); err != nil {
		t.Fatal(err)
	}
	if code, err := k.do("/2", "X-Secret: 1\r\n"); code != 200 {
		t.Fatalf("the open keep-alive connection broke across Apply: %d %v", code, err)
	}
	got := rc.all()
	if got[0].header.Get("X-Secret") == "" || got[1].header.Get("X-Secret") != "" || got[1].ex.Listener != "renamed" {
		t.Fatal("the new hygiene did not apply to the kept connection")
	}
	if s.Addr("renamed").String() != spec.Addr || s.Addr("a") != nil {
		t.Fatal("Addr does not follow the rename")
	}
}

func TestApplySettingsChangeOnKeptSocket(t *testing.T) {
	t.Parallel()
	rc := newRecorder()
	spec := baseSpec("a", Hygiene{})
	s := startWith(t, rc, spec)
	addr := s.Addr("a").String()
	slow := make(chan []response, 1)
	go func() { slow <- rawExchange(t, addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") }()
	rc.waitFor(t, "/slow")
	// New timeouts and h2c: a new http.Server generation on the same socket.
	spec.ReadHeaderTimeout, spec.IdleTimeout, spec.H2C = 2*time.Second, 5*time.Second, true
	if err := s.Apply([]ListenerSpec{spec}); err != nil {
		t.Fatal(err)
	}
	if s.Addr("a").String() != addr {
		t.Fatal("the socket moved")
	}
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	if resp := get(t, &http.Client{Transport: tr}, "http://"+addr+"/h2c"); resp.ProtoMajor != 2 {
		t.Fatal("the new settings are not in effect")
	}
	close(rc.release)
	// The request in flight on the previous generation completes; that generation then closes
	// the connection (it is draining).
	if got := codes(<-slow); got != "200 " {
		t.Fatalf("in-flight request across a settings change: %s", got)
	}
}

func TestApplyBindsFirstAndFailsWhole(t *testing.T) {
	t.Parallel()
	rc := newRecorder()
	a := baseSpec("a", Hygiene{})
	a.Addr = freeAddr(t)
	s := startWith(t, rc, a)
	k := dialKeepAlive(t, a.Addr)
	if code, _ := k.do("/1", ""); code != 200 {
		t.Fatal(code)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	b := baseSpec("b", Hygiene{})
	b.Addr = freeAddr(t)
	c := baseSpec("c", Hygiene{})
	c.Addr = busy.Addr().String()
	// a is being replaced by b and c, but c cannot bind: nothing changes.
	if err := s.Apply([]ListenerSpec{b, c}); err == nil || !strings.Contains(err.Error(), "listener c") {
		t.Fatalf("Apply with a busy address: %v", err)
	}
	if code, err := k.do("/2", ""); code != 200 {
		t.Fatalf("a failed Apply disturbed the running listener: %d %v", code, err)
	}
	if s.Addr("b") != nil || s.Addr("c") != nil || s.Addr("a") == nil {
		t.Fatal("a failed Apply left listeners behind")
	}
	if l, err := net.Listen("tcp", b.Addr); err != nil {
		t.Fatalf("a failed Apply kept a newly bound socket: %v", err)
	} else {
		l.Close()
	}
	// Replacing a by b: b serves, a stops accepting, a's in-flight request finishes.
	slow := make(chan []response, 1)
	go func() { slow <- rawExchange(t, a.Addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") }()
	rc.waitFor(t, "/slow")
	if err := s.Apply([]ListenerSpec{b}); err != nil {
		t.Fatal(err)
	}
	if got := codes(rawExchange(t, b.Addr, closeReq)); got != "200 " {
		t.Fatalf("new listener: %s", got)
	}
	if c, err := net.Dial("tcp", a.Addr); err == nil {
		c.Close()
		t.Fatal("the removed listener still accepts")
	}
	close(rc.release)
	if got := codes(<-slow); got != "200 " {
		t.Fatalf("in-flight request on the removed listener: %s", got)
	}
}

func TestApplyValidates(t *testing.T) {
	t.Parallel()
	s := New(newRecorder(), nil)
	defer s.Shutdown(context.Background())
	a := baseSpec("a", Hygiene{})
	a.Addr = freeAddr(t)
	for _, specs := range [][]ListenerSpec{
		{a, a},
		{a, func() ListenerSpec { b := a; b.Name = "b"; return b }()},
		{func() ListenerSpec { b := a; b.TLS = &TLSSpec{}; return b }()},
	} {
		if err := s.Apply(specs); err == nil {
			t.Errorf("accepted %d specs", len(specs))
		}
	}
	if s.Addr("a") != nil {
		t.Fatal("a rejected Apply bound a socket")
	}
}

func TestShutdownDrainsThenClosesHijacked(t *testing.T) {
	t.Parallel()
	rc := newRecorder()
	s := New(rc, nil)
	if err := s.Apply([]ListenerSpec{baseSpec("a", Hygiene{})}); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr("a").String()
	// An upgraded (hijacked) connection that echoes.
	hj := dialKeepAlive(t, addr)
	io.WriteString(hj.c, "GET /hijack HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.ReadResponse(hj.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatal(resp, err)
	}
	echo := func() error {
		if _, err := io.WriteString(hj.c, "ping\n"); err != nil {
			return err
		}
		line, err := hj.br.ReadString('\n')
		if err == nil && line != "ping\n" {
			err = errors.New("bad echo " + line)
		}
		return err
	}
	if err := echo(); err != nil {
		t.Fatal(err)
	}
	slow := make(chan []response, 1)
	go func() { slow <- rawExchange(t, addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") }()
	rc.waitFor(t, "/slow")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	// Wait until the listener stops accepting; the slow request holds Shutdown open meanwhile.
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned with a request in flight: %v", err)
	default:
	}
	if err := echo(); err != nil {
		t.Fatalf("the hijacked connection was closed before the drain ended: %v", err)
	}
	close(rc.release)
	if got := codes(<-slow); got != "200 " {
		t.Fatalf("in-flight request during Shutdown: %s", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := hj.br.ReadString('\n'); err == nil {
		t.Fatal("the hijacked connection survived Shutdown")
	}
	if err := s.Apply([]ListenerSpec{baseSpec("a", Hygiene{})}); err == nil {
		t.Fatal("Apply after Shutdown")
	}
}

func TestShutdownDeadlineCutsRequests(t *testing.T) {
	t.Parallel()
	rc := newRecorder()
	s := New(rc, nil)
	if err := s.Apply([]ListenerSpec{baseSpec("a", Hygiene{})}); err != nil {
		t.Fatal(err)
	}
	slow := make(chan []response, 1)
	go func() { slow <- rawExchange(t, s.Addr("a").String(), "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") }()
	rc.waitFor(t, "/slow")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown past its deadline: %v", err)
	}
	if got := <-slow; len(got) != 0 {
		t.Fatalf("a cut request got %s", codes(got))
	}
	close(rc.release) // let the handler goroutine end
}
