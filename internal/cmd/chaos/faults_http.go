package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// Faults of the clients: too many, too slow, too big, too strange.

// responsive checks that the normal client kept getting answers while the
// fault lasted: only 200s (the database is up), with p99 under 1 s.
func (x *sc) responsive() {
	t := x.prober.tally(x.res.faultStart, x.res.faultEnd)
	p99 := t.quantile(0.99)
	ok := t.ok > 0 && t.unavailable+t.other == 0 && p99 < time.Second
	x.res.add(check{"responsive", ok, fmt.Sprintf("during the fault: %d× 200, %d× 503, %d× other; p50 %s, p99 %s (bound: all 200, p99 < 1 s)",
		t.ok, t.unavailable, t.other, ms(t.quantile(0.5)), ms(p99))})
}

// idleConnections holds 2000 idle TCP connections and 2000 keep-alive HTTP
// connections on one replica for 10 s while the normal client queries it.
func idleConnections(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 1); err != nil {
		return err
	}
	r := x.replicas[0]
	x.faultBegins(ctx)
	idle, err := dialAll(ctx, r.addr, 2000, nil)
	defer closeAll(idle)
	if err != nil {
		x.res.notef("idle connections: %v", err)
	}
	kept, err := dialAll(ctx, r.addr, 2000, keepAlive)
	defer closeAll(kept)
	if err != nil {
		x.res.notef("keep-alive connections: %v", err)
	}
	opened := time.Since(x.res.faultStart)
	if !sleepCtx(ctx, 10*time.Second) {
		return ctx.Err()
	}
	openIdle, openKept := stillOpen(idle), stillOpen(kept)
	_, hwm := r.memory()
	closeAll(idle)
	closeAll(kept)
	x.faultEnds()
	x.res.didf("1 replica (open files limit %d); %d idle TCP and %d keep-alive HTTP connections (one GET / each) opened in %.1f s, held 10 s",
		x.e.nofile, len(idle), len(kept), opened.Seconds())
	x.res.add(check{"accepted", len(idle) == 2000 && len(kept) == 2000,
		fmt.Sprintf("%d of 2000 idle and %d of 2000 keep-alive connections established", len(idle), len(kept))})
	x.res.notef("after 10 s the server had closed %d of %d idle connections (ReadHeaderTimeout) and %d of %d keep-alive ones; peak RSS %s",
		len(idle)-openIdle, len(idle), len(kept)-openKept, len(kept), mib(hwm))
	x.responsive()
	x.conclude(ctx, concludeOpts{firstDue: x.res.faultStart})
	return nil
}

// hostileRequests runs slowloris connections, oversized headers and
// oversized bodies at one replica for 12 s.
func hostileRequests(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 1); err != nil {
		return err
	}
	r := x.replicas[0]
	x.faultBegins(ctx)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		closed   []time.Duration
		slowErr  error
		headers  = map[int]int{} // status → count; 0: closed without an answer
		bodies   = map[string]int{}
		bodySize = int64(64 << 20)
	)
	wg.Go(func() { closed, slowErr = slowloris(ctx, r.addr, 200, 12*time.Second) })
	for _, size := range []int{20 << 10, 64 << 10, 1 << 20} {
		for range 5 {
			wg.Go(func() {
				code, _ := rawRequest(ctx, r.addr, "GET / HTTP/1.1\r\nHost: chaos\r\nX-Big: "+strings.Repeat("a", size), 0)
				mu.Lock()
				headers[code]++
				mu.Unlock()
			})
		}
	}
	for _, method := range []string{"POST", "GET"} {
		for range 10 {
			wg.Go(func() {
				code, _ := rawRequest(ctx, r.addr, method+" / HTTP/1.1\r\nHost: chaos", bodySize)
				mu.Lock()
				bodies[fmt.Sprintf("%s→%d", method, code)]++
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	x.faultEnds()
	x.res.didf("1 replica; 200 slowloris connections (a header byte a second, re-opened when closed, 12 s), 15 requests with 20 KiB–1 MiB headers, 20 with 64 MiB bodies")
	if slowErr != nil {
		x.res.notef("slowloris: %v", slowErr)
	}
	if len(closed) > 0 {
		slices.Sort(closed)
		x.res.notef("%d slowloris connections opened (re-opened when closed); the server let them live %.1f s (median), %.1f s (longest)",
			len(closed), closed[len(closed)/2].Seconds(), closed[len(closed)-1].Seconds())
	}
	x.res.notef("oversized headers answered %s; 64 MiB bodies answered %s (0: closed without an answer)", codes(headers), codesS(bodies))
	x.responsive()
	x.conclude(ctx, concludeOpts{firstDue: x.res.faultStart})
	return nil
}

// methodFloodScenario sends 20,000 requests with distinct method tokens and
// checks that /metrics and memory stay bounded.
func methodFloodScenario(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 1); err != nil {
		return err
	}
	r := x.replicas[0]
	sleepCtx(ctx, time.Second) // let the normal client warm the replica up
	before, _, err := r.metrics(ctx)
	if err != nil {
		return err
	}
	rssBefore, _ := r.memory()
	x.faultBegins(ctx)
	flood, err := methodFlood(ctx, r.addr, 20_000, 8)
	x.faultEnds()
	if err != nil {
		x.res.notef("flood: %v", err)
	}
	after, body, err := r.metrics(ctx)
	if err != nil {
		return err
	}
	rssAfter, _ := r.memory()
	families, err := parseMetrics(body)
	if err != nil {
		return err
	}
	var series int
	for _, f := range families {
		series += len(labelled(f, "method", fromFlood))
	}
	x.res.didf("1 replica; 20,000 requests `M0000001 / HTTP/1.1` … on 8 keep-alive connections in %.1f s, answered %s",
		x.res.faultEnd.Sub(x.res.faultStart).Seconds(), codes(flood))
	x.res.add(check{"metrics", after < maxMetricsBytes && series == 0,
		fmt.Sprintf("/metrics %s → %s, %d series labelled with a client's method (bound: < 200 KiB, none)", kib(int64(before)), kib(int64(after)), series)})
	growth := rssAfter - rssBefore
	x.res.add(check{"memory", growth < maxRSSGrowth,
		fmt.Sprintf("RSS %s → %s (+%s; bound: +50 MiB)", mib(rssBefore), mib(rssAfter), mib(growth))})
	x.responsive()
	x.conclude(ctx, concludeOpts{firstDue: x.res.faultStart})
	return nil
}

// fromFlood says whether an HTTP method label came from the flood's
// tokens (M0000001…).
func fromFlood(method string) bool { return strings.HasPrefix(method, "M") }

// overloadScenario runs 512 closed-loop clients of GET / for 10 s.
func overloadScenario(ctx context.Context, x *sc) error {
	if err := x.start(ctx, "rolling", 1); err != nil {
		return err
	}
	r := x.replicas[0]
	x.faultBegins(ctx)
	t := overload(ctx, r.url("/"), 512, 10*time.Second)
	x.faultEnds()
	secs := x.res.faultEnd.Sub(x.res.faultStart).Seconds()
	x.res.didf("1 replica; 512 connections, each sending GET / back to back for 10 s: %d requests (%.0f/s)", t.total(), float64(t.total())/secs)
	x.res.add(checkClients("load", t))
	x.res.notef("the load's 200s: p50 %s, p99 %s", ms(t.quantile(0.5)), ms(t.quantile(0.99)))
	if d := describeDetails(t); d != "" {
		x.res.notef("the load's %s", d)
	}
	x.conclude(ctx, concludeOpts{firstDue: x.res.faultStart})
	return nil
}

func codes(m map[int]int) string {
	s := map[string]int{}
	for k, v := range m {
		s[fmt.Sprint(k)] = v
	}
	return codesS(s)
}

func codesS(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
