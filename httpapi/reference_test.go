package httpapi

import (
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/pointsd/pointsd/internal/doccheck"
)

// The tests of this file keep docs/REFERENCE.md's endpoints and /status
// fields true to the router and the JSON the handlers write.

func referenceTable(t *testing.T, heading string) [][]string {
	t.Helper()
	md, err := doccheck.Read("docs/REFERENCE.md")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := doccheck.Table(md, heading)
	if err != nil {
		t.Fatalf("docs/REFERENCE.md: %v", err)
	}
	return rows
}

// firstCodes is the first code span of each row's first cell.
func firstCodes(t *testing.T, rows [][]string) []string {
	t.Helper()
	var out []string
	for _, r := range rows {
		code := doccheck.Code(r[0])
		if len(code) == 0 {
			t.Errorf("docs/REFERENCE.md: row %q has no code in its first cell", r)
			continue
		}
		out = append(out, code[0])
	}
	slices.Sort(out)
	return out
}

func TestReferenceEndpoints(t *testing.T) {
	t.Parallel()
	// The router is built without a database: nothing here connects.
	a, _ := newAPI(t, "postgres://nobody@127.0.0.1:1/none", Config{})
	var routes []string
	err := chi.Walk(a.mux, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(routes)
	if doc := firstCodes(t, referenceTable(t, "Endpoints")); !slices.Equal(doc, routes) {
		t.Errorf("docs/REFERENCE.md's endpoints are %q, the router's %q", doc, routes)
	}
}

// jsonFields are the JSON names of a struct's fields.
func jsonFields(v any) []string {
	var out []string
	typ := reflect.TypeOf(v)
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func TestReferenceStatusFields(t *testing.T) {
	t.Parallel()
	for heading, body := range map[string]any{"`/status` fields": statusBody{}, "`oldest_snapshot` fields": snapshotBody{}} {
		if doc, code := firstCodes(t, referenceTable(t, heading)), jsonFields(body); !slices.Equal(doc, code) {
			t.Errorf("docs/REFERENCE.md's %s are %q, the JSON's %q", heading, doc, code)
		}
	}
}
