package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
	"github.com/pointsd/pointsd/pgsql"
)

// A read the database refuses for want of disk is a 503 that says so, and
// is counted by kind; a 53300 (too many connections) is still the database
// unavailable, and not counted.
func TestOutOfResourcesIs503AndCounted(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	a, _ := newAPI(t, pgtest.NewDB(t, pgtest.Options{}), Config{Metrics: m})
	for _, c := range []struct {
		code, msg string
		counted   float64
	}{
		{"53100", "database out of resources", 1},
		{"53300", "database unavailable", 1},
	} {
		w := httptest.NewRecorder()
		err := fmt.Errorf("query answer: %w", &pgconn.PgError{Code: c.code})
		a.fail(w, httptest.NewRequest("GET", "/", nil), err)
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 503 || body["error"] != c.msg {
			t.Errorf("SQLSTATE %s: %d %q (%v); want 503 %q", c.code, w.Code, w.Body.String(), err, c.msg)
		}
		if got := testutil.ToFloat64(m.DatabaseErrors.WithLabelValues(pgsql.OutOfDisk)); got != c.counted {
			t.Errorf("after SQLSTATE %s: pointsd_database_errors_total{kind=disk_full} = %v, want %v", c.code, got, c.counted)
		}
	}
}
