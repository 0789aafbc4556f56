package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer accepts connections and sends back what they send.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// dial connects to p and returns a function that sends msg and reads its
// echo, waiting at most within.
func dial(t *testing.T, p *Proxy) (net.Conn, func(msg string, within time.Duration) (string, error)) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, func(msg string, within time.Duration) (string, error) {
		if _, err := c.Write([]byte(msg)); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(within))
		buf := make([]byte, len(msg))
		n, err := io.ReadFull(c, buf)
		return string(buf[:n]), err
	}
}

// through starts a proxy to an echo server (closed when t ends), connects
// through it and checks that bytes pass.
func through(t *testing.T) (*Proxy, net.Conn, func(msg string, within time.Duration) (string, error)) {
	t.Helper()
	p, err := Start(context.Background(), echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	c, echo := dial(t, p)
	if got, err := echo("a", 2*time.Second); got != "a" {
		t.Fatalf("before any fault: %q, %v", got, err)
	}
	return p, c, echo
}

// readHeld reads n bytes that were held by a freeze.
func readHeld(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, n)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("after the thaw: %q, %v", buf, err)
	}
	return string(buf)
}

// TestFreeze: bytes pass, then none while frozen (the socket stays open),
// then the held ones arrive once thawed.
func TestFreeze(t *testing.T) {
	p, c, echo := through(t)
	p.Freeze()
	if got, err := echo("b", 300*time.Millisecond); got != "" || err == nil {
		t.Fatalf("frozen: got %q, %v; want nothing and a timeout", got, err)
	}
	p.Thaw()
	if got := readHeld(t, c, 1); got != "b" {
		t.Fatalf("after the thaw: %q; want the held b", got)
	}
}

// TestFreezeOn: the proxy passes chunks until one holds the trigger, then
// freezes before any of it passes, and says so.
func TestFreezeOn(t *testing.T) {
	p, c, echo := through(t)
	tripped := p.FreezeOn([]byte("COMMIT PREPARED"))
	if got, err := echo("PREPARE TRANSACTION 'x'", 2*time.Second); got != "PREPARE TRANSACTION 'x'" {
		t.Fatalf("before the trigger: %q, %v", got, err)
	}
	select {
	case <-tripped:
		t.Fatal("tripped by a chunk without the trigger")
	default:
	}
	if got, err := echo("COMMIT PREPARED 'x'", 300*time.Millisecond); got != "" || err == nil {
		t.Fatalf("the trigger passed: got %q, %v; want nothing and a timeout", got, err)
	}
	select {
	case <-tripped:
	case <-time.After(time.Second):
		t.Fatal("the trigger froze the proxy but did not say so")
	}
	p.Thaw()
	if got := readHeld(t, c, len("COMMIT PREPARED 'x'")); got != "COMMIT PREPARED 'x'" {
		t.Fatalf("after the thaw: %q; want the held statement", got)
	}
	if got, err := echo("COMMIT PREPARED 'y'", 2*time.Second); got != "COMMIT PREPARED 'y'" {
		t.Fatalf("a trigger fires once: %q, %v", got, err)
	}
}

// TestCut: a cut resets the connections open through the proxy, what they
// held is dropped, and new connections pass.
func TestCut(t *testing.T) {
	p, c, echo := through(t)
	p.Freeze()
	if got, err := echo("held", 300*time.Millisecond); got != "" || err == nil {
		t.Fatalf("frozen: got %q, %v; want nothing and a timeout", got, err)
	}
	p.Cut()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 8)); err == nil || isTimeout(err) {
		t.Fatalf("after the cut: read %d bytes, %v; want the connection reset or closed", n, err)
	}
	_, echo = dial(t, p)
	if got, err := echo("new", 2*time.Second); got != "new" {
		t.Fatalf("a connection after the cut: %q, %v", got, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
