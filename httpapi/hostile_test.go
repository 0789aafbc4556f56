package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/pointsd/pointsd/internal/pgtest"
)

// Any token is a valid HTTP method, so a client can send a new one with
// every request. Each must not become a series of its own: the metrics
// would grow without bound, for anyone who can reach the port.
func TestDistinctMethodsDoNotGrowTheMetrics(t *testing.T) {
	t.Parallel()
	a, srv := newAPI(t, pgtest.NewDB(t, pgtest.Options{Users: 10}), Config{})
	u, _ := url.Parse(srv.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 500
	w := bufio.NewWriter(conn)
	for i := range n {
		fmt.Fprintf(w, "M%07d / HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	for i := range n {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("response %d: %s, want 405", i, resp.Status)
		}
	}
	get(t, srv.URL+"/")
	want := []string{"GET / 200", "OTHER unmatched 405"}
	if got := requestSeries(t, a); !slices.Equal(got, want) {
		t.Errorf("after %d distinct methods the request series are %v, want %v", n, got, want)
	}
}
