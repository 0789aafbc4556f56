package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Outcome classes of one request, as the invariant sees them.
const (
	classOK          = 200 // 200, and for GET / a well-formed answer
	classUnavailable = 503 // 503 with a JSON {"error":…} body
	classOther       = 0   // anything else: another status, a bad body, a transport error
)

// outcome is one request of a normal client.
type outcome struct {
	replica    string
	path       string
	sent, done time.Time
	class      int
	detail     string  // the 503's error, or what was wrong
	answer     *answer // a 200 of GET /, for the truth check (truth.go)
}

// answer is the body of a 200 of GET /.
type answer struct {
	Users []struct {
		ID     int64 `json:"id"`
		Points int   `json:"points"`
	} `json:"users"`
	Timestamp *string `json:"timestamp"`
}

// parseAnswer reads a GET / body, nil when it is not a well-formed answer.
func parseAnswer(body []byte) *answer {
	var a answer
	if err := json.Unmarshal(body, &a); err != nil || a.Users == nil || len(a.Users) > 2 {
		return nil
	}
	return &a
}

// tally counts outcomes by class, and the distinct details.
type tally struct {
	ok, unavailable, other int
	details                map[string]int
	latencies              []time.Duration // of 200s
}

func (t *tally) add(o outcome) {
	if t.details == nil {
		t.details = map[string]int{}
	}
	switch o.class {
	case classOK:
		t.ok++
		t.latencies = append(t.latencies, o.done.Sub(o.sent))
		return
	case classUnavailable:
		t.unavailable++
		t.details["503 "+o.detail]++
	default:
		t.other++
		t.details[o.detail]++
	}
}

func (t *tally) total() int { return t.ok + t.unavailable + t.other }

// p99 is the 99th percentile latency of the 200s.
func (t *tally) quantile(q float64) time.Duration {
	if len(t.latencies) == 0 {
		return 0
	}
	l := slices.Clone(t.latencies)
	slices.Sort(l)
	return l[min(int(q*float64(len(l))), len(l)-1)]
}

// topDetails lists the n most frequent details with their counts.
func (t *tally) topDetails(n int) string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range t.details {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return b.v - a.v })
	var parts []string
	for _, x := range all[:min(n, len(all))] {
		parts = append(parts, fmt.Sprintf("%d× %s", x.v, x.k))
	}
	return strings.Join(parts, "; ")
}

// classify sorts a response (or a transport error) into the three classes.
func classify(path string, resp *http.Response, body []byte, err error) (int, string) {
	if err != nil {
		return classOther, transportError(err)
	}
	ct := resp.Header.Get("Content-Type")
	switch resp.StatusCode {
	case http.StatusOK:
		if path != "/" {
			return classOK, ""
		}
		a := parseAnswer(body)
		if a == nil {
			return classOther, "200 with a malformed answer: " + snippet(body)
		}
		for _, u := range a.Users {
			if u.Points < 0 || u.Points > 100 || u.ID < 1 {
				return classOther, "200 with an impossible user: " + snippet(body)
			}
		}
		return classOK, ""
	case http.StatusServiceUnavailable:
		var e struct {
			Error string `json:"error"`
		}
		if !strings.HasPrefix(ct, "application/json") || json.Unmarshal(body, &e) != nil || e.Error == "" {
			return classOther, fmt.Sprintf("503 %q: %s", ct, snippet(body))
		}
		return classUnavailable, e.Error
	}
	return classOther, fmt.Sprintf("%d %s", resp.StatusCode, snippet(body))
}

// transportError names a failed request's cause without addresses or
// ports, so that equal causes count together.
func transportError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed (EOF)"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// prober is the normal client of every scenario: it queries GET / and
// /readyz on each replica every interval and records each outcome.
type prober struct {
	client *http.Client
	every  time.Duration
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	outcomes []outcome
	targets  map[*replica]*sync.WaitGroup
}

// probeEvery is the normal client's pace per replica and path: 10
// requests/s each, enough to time a recovery to 0.1 s.
const probeEvery = 100 * time.Millisecond

func startProber(ctx context.Context, rs ...*replica) *prober {
	ctx, cancel := context.WithCancel(ctx)
	p := &prober{
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}},
		every:  probeEvery, ctx: ctx, cancel: cancel, targets: map[*replica]*sync.WaitGroup{},
	}
	for _, r := range rs {
		p.add(r)
	}
	return p
}

// add starts probing r.
func (p *prober) add(r *replica) {
	wg := &sync.WaitGroup{}
	p.mu.Lock()
	p.targets[r] = wg
	p.mu.Unlock()
	for _, path := range []string{"/", "/readyz"} {
		wg.Go(func() { p.loop(r, path) })
	}
}

// drop stops probing r and waits for its requests in flight, so that a
// replica killed on purpose is not counted against the invariant.
func (p *prober) drop(r *replica) {
	p.mu.Lock()
	wg := p.targets[r]
	delete(p.targets, r)
	p.mu.Unlock()
	if wg != nil {
		wg.Wait()
	}
}

func (p *prober) probing(r *replica) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.targets[r]
	return ok
}

func (p *prober) loop(r *replica, path string) {
	for p.probing(r) && p.ctx.Err() == nil {
		o := outcome{replica: r.name, path: path, sent: time.Now()}
		req, _ := http.NewRequestWithContext(p.ctx, http.MethodGet, r.url(path), nil)
		resp, err := p.client.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close() // read-only: nothing to lose
		}
		if p.ctx.Err() != nil {
			return // the harness stopped probing: not the server's doing
		}
		o.done = time.Now()
		o.class, o.detail = classify(path, resp, body, err)
		if path == "/" && o.class == classOK {
			o.answer = parseAnswer(body)
		}
		p.mu.Lock()
		p.outcomes = append(p.outcomes, o)
		p.mu.Unlock()
		sleepCtx(p.ctx, time.Until(o.sent.Add(p.every)))
	}
}

// stop ends probing and waits for every request in flight.
func (p *prober) stop() {
	p.mu.Lock()
	var wgs []*sync.WaitGroup
	for r, wg := range p.targets {
		wgs = append(wgs, wg)
		delete(p.targets, r)
	}
	p.mu.Unlock()
	p.cancel()
	for _, wg := range wgs {
		wg.Wait()
	}
	p.client.CloseIdleConnections()
}

// snapshot returns the outcomes so far.
func (p *prober) snapshot() []outcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.outcomes)
}

// tally counts the outcomes sent in [from, to) (zero times: unbounded).
func (p *prober) tally(from, to time.Time) tally {
	var t tally
	for _, o := range p.snapshot() {
		if (!from.IsZero() && o.sent.Before(from)) || (!to.IsZero() && !o.sent.Before(to)) {
			continue
		}
		t.add(o)
	}
	return t
}

// firstOK returns when the first request sent at or after t got a 200 on
// path, waiting up to d for it.
func (p *prober) firstOK(ctx context.Context, path string, t time.Time, d time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(d)
	for {
		for _, o := range p.snapshot() {
			if o.path == path && o.class == classOK && !o.sent.Before(t) {
				return o.done, true
			}
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 50*time.Millisecond) {
			return time.Time{}, false
		}
	}
}

// failingSpan is the time between the first and the last failed GET / sent
// in [from, to), 0 when none failed.
func (p *prober) failingSpan(from, to time.Time) (time.Duration, int) {
	var first, last time.Time
	n := 0
	for _, o := range p.snapshot() {
		if o.path != "/" || o.class == classOK || o.sent.Before(from) || !o.sent.Before(to) {
			continue
		}
		if first.IsZero() {
			first = o.sent
		}
		last, n = o.done, n+1
	}
	if n == 0 {
		return 0, 0
	}
	return last.Sub(first), n
}
