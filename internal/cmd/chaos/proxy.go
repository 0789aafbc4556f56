package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"time"
)

// freezeProxy is a TCP proxy that can freeze: while frozen it accepts
// connections and reads what it can, but passes no byte and no close in
// either direction, and closes nothing. That is a network path gone silent
// (a stuck middlebox, a partition without a reset), as the two ends see it:
// their sockets open, their kernels happy, nothing arriving.
type freezeProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	thaw   chan struct{} // closed when frozen turns false
	conns  []net.Conn
	wg     sync.WaitGroup
}

// startProxy listens on a loopback port and forwards to target.
func startProxy(ctx context.Context, target string) (*freezeProxy, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &freezeProxy{ln: ln, target: target, thaw: make(chan struct{})}
	close(p.thaw)
	p.wg.Go(p.accept)
	return p, nil
}

// url is dbURL with its host and port replaced by the proxy's.
func (p *freezeProxy) url(dbURL string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", err
	}
	u.Host = p.ln.Addr().String()
	return u.String(), nil
}

func (p *freezeProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

func (p *freezeProxy) serve(client net.Conn) {
	p.waitThawed() // a connection opened while frozen gets nowhere either
	server, err := (&net.Dialer{Timeout: 3 * time.Second}).DialContext(context.Background(), "tcp", p.target)
	if err != nil {
		_ = client.Close() // the server is down: the client sees it as such
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, client, server)
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(server, client) })
	wg.Go(func() { p.pipe(client, server) })
	wg.Wait()
	_ = client.Close() // both directions are done
	_ = server.Close()
}

// pipe copies from src to dst, holding each chunk, and the end of the
// stream, while the proxy is frozen.
func (p *freezeProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
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

func (p *freezeProxy) waitThawed() {
	p.mu.Lock()
	ch := p.thaw
	p.mu.Unlock()
	<-ch
}

// freeze stops every byte; thaw lets them (and what was held) through.
func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen, p.thaw = true, make(chan struct{})
	}
}

func (p *freezeProxy) unfreeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thaw)
	}
}

// close thaws, stops listening and closes every connection.
func (p *freezeProxy) close() {
	p.unfreeze()
	_ = p.ln.Close() // ends accept
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close() // ends the pipes
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// tcpFreeze puts the leader's every connection to PostgreSQL behind a
// proxy, freezes the proxy mid-cycle for grayHold, then thaws it. The other
// replica connects directly.
func tcpFreeze(ctx context.Context, x *sc) error {
	u, err := url.Parse(x.e.pg.url)
	if err != nil {
		return err
	}
	p, err := startProxy(ctx, u.Host)
	if err != nil {
		return err
	}
	defer p.close()
	viaProxy, err := p.url(x.e.pg.url)
	if err != nil {
		return err
	}
	// The proxied replica starts first, so it leads.
	if err := x.startSpecs(ctx, replicaSpec{mode: "rolling", dbURL: viaProxy}, replicaSpec{mode: "rolling", dbURL: x.e.pg.url}); err != nil {
		return err
	}
	leader, err := x.leader(ctx)
	if err != nil {
		return err
	}
	if leader != x.replicas[0] {
		return errors.New("the replica behind the proxy, started first, does not lead")
	}
	if err := x.waitMidCycle(ctx, "rolling"); err != nil {
		return err
	}
	x.faultBegins(ctx)
	p.freeze()
	x.res.didf("2 replicas, rolling; the leader (%s) reaches PostgreSQL through a TCP proxy, frozen mid-cycle (sockets open, no byte passes) for %s; %s connects directly",
		leader.name, grayHold, x.replicas[1].name)
	return x.grayFault(ctx, leader, false, func() error {
		p.unfreeze()
		return nil
	})
}
