package main

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBoundaries(t *testing.T) {
	period := 6 * time.Second
	at := time.Unix(600, 0) // a multiple of 6 s
	cases := []struct {
		t           time.Time
		floor, ceil time.Time
	}{
		{at, at, at},
		{at.Add(time.Nanosecond), at, at.Add(period)},
		{at.Add(period - time.Nanosecond), at, at.Add(period)},
	}
	for _, c := range cases {
		if got := floorBoundary(c.t, period); !got.Equal(c.floor) {
			t.Errorf("floorBoundary(%v) = %v, want %v", c.t, got, c.floor)
		}
		if got := ceilBoundary(c.t, period); !got.Equal(c.ceil) {
			t.Errorf("ceilBoundary(%v) = %v, want %v", c.t, got, c.ceil)
		}
	}
}

// The client invariant hinges on classify: a 503 counts as graceful only
// with a JSON error body, and a 200 only with a well-formed answer.
func TestClassify(t *testing.T) {
	cases := []struct {
		path  string
		code  int    // the response's status; 0 for none
		ct    string // its Content-Type
		body  string
		err   error
		class int
		want  string // in the detail
	}{
		{"/", 200, "application/json", `{"users":[{"id":1,"points":30}],"timestamp":null}`, nil, classOK, ""},
		{"/", 200, "application/json", `{"users":null,"timestamp":null}`, nil, classOther, "malformed"},
		{"/", 200, "application/json", `{"users":[{"id":1,"points":101}],"timestamp":null}`, nil, classOther, "impossible"},
		{"/readyz", 200, "application/json", `{"status":"ready"}`, nil, classOK, ""},
		{"/", 503, "application/json", `{"error":"database unavailable"}`, nil, classUnavailable, "database unavailable"},
		{"/", 503, "text/plain", `database unavailable`, nil, classOther, "text/plain"},
		{"/", 503, "application/json", `{}`, nil, classOther, "503"},
		{"/", 500, "application/json", `{"error":"internal error"}`, nil, classOther, "500"},
		{"/", 0, "", "", syscall.ECONNREFUSED, classOther, "connection refused"},
		{"/", 0, "", "", io.ErrUnexpectedEOF, classOther, "EOF"},
	}
	for _, c := range cases {
		var resp *http.Response
		if c.code != 0 {
			resp = &http.Response{StatusCode: c.code, Header: http.Header{"Content-Type": {c.ct}}}
		}
		class, detail := classify(c.path, resp, []byte(c.body), c.err)
		if class != c.class || !strings.Contains(detail, c.want) {
			t.Errorf("classify(%s %s, %v) = %d %q, want %d containing %q", c.path, c.body, c.err, class, detail, c.class, c.want)
		}
	}
}

func TestTransportErrorDropsAddresses(t *testing.T) {
	err := errors.New("Get \"http://127.0.0.1:4000/\": dial tcp 127.0.0.1:4000: something odd")
	if got := transportError(err); got != "something odd" {
		t.Errorf("transportError = %q, want %q", got, "something odd")
	}
}
