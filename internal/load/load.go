// Package load puts an open-loop HTTP load on a URL for the benchmarks:
// requests leave at a fixed rate whatever the server does, and each latency
// is measured from the request's scheduled time, so a stall shows up as
// latency rather than as a politely slower client (no coordinated omission).
package load

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Second is what one second of load saw.
type Second struct {
	Requests, Errors int // errors: failed or not 200
	P50, P99         time.Duration
}

// Run sends rate GET requests per second to url for the given number of
// seconds, with at most conns connections.
func Run(ctx context.Context, url string, rate, seconds, conns int) []Second {
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns},
	}
	defer client.CloseIdleConnections()
	lat := make([][]time.Duration, seconds)
	errs := make([]int, seconds)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now().Add(50 * time.Millisecond)
	interval := time.Second / time.Duration(rate)
	for i := range seconds * rate {
		at := start.Add(time.Duration(i) * interval)
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			ok := false
			if resp, err := get(ctx, client, url); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close() // drained; only the status matters
				ok = resp.StatusCode == http.StatusOK
			}
			took := time.Since(at)
			sec := i / rate
			mu.Lock()
			lat[sec] = append(lat[sec], took)
			if !ok {
				errs[sec]++
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	out := make([]Second, seconds)
	for s, l := range lat {
		slices.Sort(l)
		out[s] = Second{Requests: len(l), Errors: errs[s], P50: Quantile(l, 0.5), P99: Quantile(l, 0.99)}
	}
	return out
}

// get GETs url with client.
func get(ctx context.Context, client *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return client.Do(req)
}

// Quantile is the q-quantile of sorted durations (0 when empty).
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(q*float64(len(sorted))), len(sorted)-1)]
}
