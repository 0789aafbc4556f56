// Command loadgen puts an open-loop load on a URL: requests are sent at a
// fixed rate whatever the answers do, and each latency is measured from the
// request's scheduled time, so a stalled server shows up as latency instead
// of as a politely slower client (no coordinated omission). It prints one CSV
// line per second: second, requests, errors (non-200 or failed), p50 and
// p99 in milliseconds.
//
//	go run ./internal/loadgen -url http://127.0.0.1:4000/ -rate 2000 -duration 2m
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:4000/", "URL to GET")
	rate := flag.Int("rate", 2000, "requests per second")
	duration := flag.Duration("duration", 30*time.Second, "how long to send")
	conns := flag.Int("conns", 256, "most connections (and requests in flight)")
	flag.Parse()

	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns},
	}
	seconds := int(duration.Seconds())
	lat := make([][]time.Duration, seconds)
	errs := make([]int, seconds)
	var mu sync.Mutex
	var wg sync.WaitGroup

	start := time.Now().Add(100 * time.Millisecond)
	interval := time.Second / time.Duration(*rate)
	total := seconds * *rate
	for i := range total {
		at := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(at))
		wg.Go(func() {
			resp, err := client.Get(*url)
			ok := err == nil && resp.StatusCode == 200
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			took := time.Since(at)
			sec := i / *rate
			mu.Lock()
			lat[sec] = append(lat[sec], took)
			if !ok {
				errs[sec]++
			}
			mu.Unlock()
		})
	}
	wg.Wait()

	fmt.Println("second,requests,errors,p50_ms,p99_ms")
	for s, l := range lat {
		slices.Sort(l)
		q := func(p float64) float64 {
			if len(l) == 0 {
				return 0
			}
			return float64(l[min(int(p*float64(len(l))), len(l)-1)].Microseconds()) / 1000
		}
		fmt.Printf("%d,%d,%d,%.3f,%.3f\n", s, len(l), errs[s], q(0.50), q(0.99))
	}
	if slices.ContainsFunc(errs, func(n int) bool { return n > 0 }) {
		os.Exit(1)
	}
}
