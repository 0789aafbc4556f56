package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Hostile and overwhelming clients. Each speaks raw HTTP/1.1 on its own
// connections where net/http would refuse to misbehave.

// dialAll opens n TCP connections to addr, 16 at a time.
func dialAll(ctx context.Context, addr string, n int, each func(net.Conn) error) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var (
		mu    sync.Mutex
		first error
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	d := net.Dialer{Timeout: 5 * time.Second}
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				c, err := d.DialContext(ctx, "tcp", addr)
				if err == nil && each != nil {
					if err = each(c); err != nil {
						_ = c.Close() // each's error is the one reported
					}
				}
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("connection %d: %w", i, err)
				}
				if err == nil {
					conns[i] = c
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	out := slices.DeleteFunc(conns, func(c net.Conn) bool { return c == nil })
	return out, first
}

// keepAlive sends one GET / on c and reads the answer, leaving the
// connection open and idle.
func keepAlive(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }() // best effort: a later use sets its own
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: chaos\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close() // drained; only the status matters
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// stillOpen counts the connections the server has not closed: a read that
// times out means open, anything else (EOF, reset) closed.
func stillOpen(conns []net.Conn) int {
	open := 0
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		var b [1]byte
		_, err := c.Read(b[:])
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			open++
		}
	}
	return open
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close() // the server may have closed it already
	}
}

// slowloris keeps n connections trickling a request: each sends a request
// line, then one header byte per second, and is opened again when the
// server closes it, until d has passed. It returns how long the server let
// each connection live (connections still open at the end count as d or
// less), and the number it had to open.
func slowloris(ctx context.Context, addr string, n int, d time.Duration) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu    sync.Mutex
		lived []time.Duration
		first error
		wg    sync.WaitGroup
	)
	header := "X-Slow: " + strings.Repeat("a", 64)
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				opened := time.Now()
				err := trickle(ctx, addr, header)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				if err == nil {
					lived = append(lived, time.Since(opened))
				}
				mu.Unlock()
				if err != nil {
					sleepCtx(ctx, time.Second)
				}
			}
		})
	}
	wg.Wait()
	return lived, first
}

// trickle opens one slowloris connection and returns when the server
// closes it or ctx ends.
func trickle(ctx context.Context, addr, header string) error {
	dl := net.Dialer{Timeout: 5 * time.Second}
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }() // closed here or by the server: either will do
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: chaos\r\n"); err != nil {
		return err
	}
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, c) // returns when the server closes (or we do)
		close(gone)
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for j := 0; ; j++ {
		select {
		case <-gone:
			return nil
		case <-ctx.Done():
			_ = c.Close() // ends the reader; deferred again, harmlessly
			<-gone
			return nil
		case <-tick.C:
			_, _ = c.Write([]byte{header[j%len(header)]})
		}
	}
}

// rawRequest sends head (request line and headers, without the blank line)
// and a body of bodySize bytes, streamed while the server reads, and
// returns the status the server answered (0: none, the connection closed).
func rawRequest(ctx context.Context, addr, head string, bodySize int64) (int, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Close() }() // the status is all that is asked
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if bodySize > 0 {
		head += fmt.Sprintf("\r\nContent-Length: %d", bodySize)
	}
	go func() {
		if _, err := io.WriteString(c, head+"\r\n\r\n"); err != nil {
			return
		}
		chunk := make([]byte, 64<<10)
		for sent := int64(0); sent < bodySize; sent += int64(len(chunk)) {
			if _, err := c.Write(chunk[:min(int64(len(chunk)), bodySize-sent)]); err != nil {
				return // the server stopped reading: expected for an oversized body
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close() // only the status matters
	return resp.StatusCode, nil
}

// methodFlood sends n requests, each with a method no one sent before
// (M0000001, M0000002, …), over conns keep-alive connections, and counts the
// answers by status.
func methodFlood(ctx context.Context, addr string, n, conns int) (map[int]int, error) {
	var (
		mu    sync.Mutex
		codes = map[int]int{}
		next  atomic.Int64
		first error
		wg    sync.WaitGroup
	)
	for range conns {
		wg.Go(func() {
			var c net.Conn
			var br *bufio.Reader
			for i := next.Add(1); i <= int64(n) && ctx.Err() == nil; i = next.Add(1) {
				if c == nil {
					var err error
					d := net.Dialer{Timeout: 5 * time.Second}
					if c, err = d.DialContext(ctx, "tcp", addr); err != nil {
						mu.Lock()
						first = err
						mu.Unlock()
						return
					}
					br = bufio.NewReader(c)
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				code := 0
				_, err := fmt.Fprintf(c, "M%07d / HTTP/1.1\r\nHost: chaos\r\n\r\n", i)
				if err == nil {
					var resp *http.Response
					if resp, err = http.ReadResponse(br, nil); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						_ = resp.Body.Close() // drained; only the status matters
						code = resp.StatusCode
						if resp.Close {
							err = io.EOF
						}
					}
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
				if err != nil {
					_ = c.Close() // broken already: the next request dials again
					c = nil
				}
			}
			if c != nil {
				_ = c.Close() // done with it
			}
		})
	}
	wg.Wait()
	return codes, first
}

// overload runs conns closed-loop clients of GET / against url for d, each
// on its own connection, and tallies what they saw.
func overload(ctx context.Context, url string, conns int, d time.Duration) tally {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns, MaxIdleConns: conns}}
	defer client.CloseIdleConnections()
	reqCtx := ctx // not cut at d: a request in flight then still counts
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		mu sync.Mutex
		t  tally
		wg sync.WaitGroup
	)
	for range conns {
		wg.Go(func() {
			var local []outcome
			for ctx.Err() == nil {
				o := outcome{path: "/", sent: time.Now()}
				var resp *http.Response
				req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, url, nil)
				if err == nil {
					resp, err = client.Do(req)
				}
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					_ = resp.Body.Close() // read-only: nothing to lose
				}
				if ctx.Err() != nil && err != nil {
					break // cut by the end of the run
				}
				o.done = time.Now()
				o.class, o.detail = classify("/", resp, body, err)
				local = append(local, o)
			}
			mu.Lock()
			for _, o := range local {
				t.add(o)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return t
}
