// Command loadgen puts an open-loop load on a URL (see package load) and
// prints one CSV line per second: second, requests, errors, p50 and p99 in
// milliseconds. It exits 1 if any request failed.
//
//	go run ./internal/loadgen -url http://127.0.0.1:4000/ -rate 2000 -duration 2m
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/pointsd/pointsd/internal/load"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:4000/", "URL to GET")
	rate := flag.Int("rate", 2000, "requests per second")
	duration := flag.Duration("duration", 30*time.Second, "how long to send")
	conns := flag.Int("conns", 256, "most connections (and requests in flight)")
	flag.Parse()

	failed := false
	fmt.Println("second,requests,errors,p50_ms,p99_ms")
	for s, r := range load.Run(context.Background(), *url, *rate, int(duration.Seconds()), *conns) {
		fmt.Printf("%d,%d,%d,%.3f,%.3f\n", s, r.Requests, r.Errors, ms(r.P50), ms(r.P99))
		failed = failed || r.Errors > 0
	}
	if failed {
		os.Exit(1)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
