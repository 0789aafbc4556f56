package httpapi

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"

	"github.com/pointsd/pointsd/internal/pgtest"
)

// GET and HEAD / skip the router unless requests are logged at debug
// level: both ways must answer and count alike, and a failure on the
// fast path must be counted with its status.
func TestRootAnswersAlikeWithAndWithoutTheRouter(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t, pgtest.Options{Users: 300})
	debug := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fast, fastSrv := newAPI(t, url, Config{})
	routed, routedSrv := newAPIWith(t, url, "", Config{Logger: debug})
	if !fast.fastRoot || routed.fastRoot {
		t.Fatalf("fastRoot = %v and %v, want true at info level and false at debug", fast.fastRoot, routed.fastRoot)
	}

	type seen struct {
		code        int
		contentType string
		users       string
		headLen     int
	}
	look := func(base string) seen {
		var s seen
		resp, err := http.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Users json.RawMessage `json:"users"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatalf("GET %s/: %v", base, err)
		}
		s.code, s.contentType, s.users = resp.StatusCode, resp.Header.Get("Content-Type"), string(body.Users)
		resp, err = http.Head(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		s.headLen = len(b)
		if resp.StatusCode != s.code {
			t.Errorf("HEAD %s/: %d, GET gave %d", base, resp.StatusCode, s.code)
		}
		return s
	}
	f, r := look(fastSrv.URL), look(routedSrv.URL)
	if f != r || f.code != 200 || f.contentType != "application/json" || f.headLen != 0 {
		t.Errorf("fast path %+v, router %+v; want the same 200 application/json answer, HEAD without a body", f, r)
	}
	want := []string{"GET / 200", "HEAD / 200"}
	for name, a := range map[string]*API{"fast path": fast, "router": routed} {
		if got := requestSeries(t, a); !slices.Equal(got, want) {
			t.Errorf("%s: request series %v, want %v", name, got, want)
		}
	}

	// A failure on the fast path is counted with its status.
	if _, err := pgtest.Pool(t, url).Exec(t.Context(), `DROP TABLE cycle_state`); err != nil {
		t.Fatal(err)
	}
	fast.cache.invalidate()
	resp, err := http.Get(fastSrv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET / without cycle_state: %s, want 503", resp.Status)
	}
	want = []string{"GET / 200", "GET / 503", "HEAD / 200"}
	if got := requestSeries(t, fast); !slices.Equal(got, want) {
		t.Errorf("fast path after a failure: request series %v, want %v", got, want)
	}
}
