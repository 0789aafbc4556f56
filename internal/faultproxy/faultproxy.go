// Package faultproxy is a TCP proxy that can freeze: while frozen it
// accepts connections and reads what it can, but passes no byte and no
// close in either direction, and closes nothing. That is a network path
// gone silent (a stuck middlebox, a partition without a reset) as its two
// ends see it: their sockets open, their kernels happy, nothing arriving.
//
// It exists for the fault tests (make chaos, the Citus tests); pointsd
// itself never proxies.
package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Proxy forwards every connection made to its address to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	frozen  bool
	thaw    chan struct{} // closed when frozen turns false
	trigger []byte        // freeze before passing a client's chunk holding it
	tripped chan struct{} // closed when trigger froze the proxy
	conns   []net.Conn
	closed  bool
	wg      sync.WaitGroup
}

// Start listens on a loopback port and forwards to target (host:port).
func Start(ctx context.Context, target string) (*Proxy, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, thaw: make(chan struct{})}
	close(p.thaw)
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

// URL is dbURL (a postgres:// URL) with its host and port replaced by the
// proxy's.
func (p *Proxy) URL(dbURL string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", err
	}
	u.Host = p.ln.Addr().String()
	return u.String(), nil
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, c) // from now on a Cut or Close ends it
		p.mu.Unlock()
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.forget(client)
	p.waitThawed() // a connection opened while frozen gets nowhere either
	server, err := (&net.Dialer{Timeout: 3 * time.Second}).DialContext(context.Background(), "tcp", p.target)
	if err != nil {
		_ = client.Close() // the target is down: the client sees it as such
		return
	}
	defer p.forget(server)
	p.mu.Lock()
	closed := p.closed
	p.conns = append(p.conns, server)
	p.mu.Unlock()
	if closed {
		_ = client.Close()
		_ = server.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(server, client, true) })
	wg.Go(func() { p.pipe(client, server, false) })
	wg.Wait()
	_ = client.Close() // both directions are done
	_ = server.Close()
}

// forget drops c, ended, from the connections a Cut or Close would end.
func (p *Proxy) forget(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = slices.DeleteFunc(p.conns, func(o net.Conn) bool { return o == c })
}

// pipe copies from src to dst, holding each chunk, and the end of the
// stream, while the proxy is frozen. Chunks from the client are checked
// against the trigger first.
func (p *Proxy) pipe(dst, src net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient {
				p.check(buf[:n])
			}
			p.waitThawed()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			p.waitThawed()
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				_ = tc.CloseWrite() // pass the half-close on
			} else {
				_ = dst.Close() // the other side's error ends this one too
			}
			return
		}
	}
}

// check freezes the proxy if chunk holds the trigger. A trigger split
// across two reads is missed: the protocols it is used on send a
// statement in one write.
func (p *Proxy) check(chunk []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.trigger == nil || !bytes.Contains(chunk, p.trigger) {
		return
	}
	p.trigger = nil
	p.freezeLocked()
	close(p.tripped)
}

func (p *Proxy) waitThawed() {
	p.mu.Lock()
	ch := p.thaw
	p.mu.Unlock()
	<-ch
}

// Freeze stops every byte; Thaw lets them (and what was held) through.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.freezeLocked()
}

func (p *Proxy) freezeLocked() {
	if !p.frozen {
		p.frozen, p.thaw = true, make(chan struct{})
	}
}

// FreezeOn arms a trigger: the proxy freezes the moment a client sends a
// chunk holding pattern, before any of that chunk passes (a statement cut
// off on its way, at a chosen point of a protocol). The returned channel
// is closed when it has. Arming again replaces the trigger.
func (p *Proxy) FreezeOn(pattern []byte) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.trigger, p.tripped = bytes.Clone(pattern), make(chan struct{})
	return p.tripped
}

// Thaw lets bytes through again, those held first.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thaw)
	}
}

// Cut resets every connection open through the proxy (each end sees a
// reset once it sends, or at once if it reads), drops what was held, and
// thaws for the connections made from then on: a partition during which
// TCP gave up on every connection, healed.
func (p *Proxy) Cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close with a reset, not a FIN
		}
		_ = c.Close() // the pipes end on it, dropping what they held
	}
	p.Thaw()
}

// Close thaws, stops listening and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.trigger = nil
	p.mu.Unlock()
	p.Thaw()
	_ = p.ln.Close() // ends accept
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		_ = c.Close() // ends the pipes
	}
	p.mu.Unlock()
	p.wg.Wait()
}
