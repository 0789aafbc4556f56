// Command staticserve is the HTTP ceiling for benchmarks: a plain net/http
// server answering every request with fixed bytes (by default a GET /
// response of pointsd's size), with nothing behind it.
//
//	go run ./internal/cmd/staticserve [-addr 127.0.0.1:4001] [-body '{"users":…}']
package main

import (
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:4001", "listen address")
	body := flag.String("body", `{"users":[{"id":12,"points":88},{"id":31,"points":95}],"timestamp":"2020-07-30 17:09:33"}`, "response body")
	flag.Parse()
	b := []byte(*body)
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		_, _ = w.Write(b)
	})
	// pointsd's ReadHeaderTimeout, for a like-for-like ceiling.
	srv := &http.Server{Addr: *addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
