package pgsql_test

import (
	"context"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/pgsql"
)

// The exchange's statements: a publish never moves an instance's time
// back and returns the others' latest; the latest is the cluster's across
// instances; pruning drops instances gone for a day but never the latest.
func TestQueryTimesExchange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.NewDB(t, pgtest.Options{}))
	base := time.Date(2020, 7, 30, 17, 9, 33, 0, time.UTC)
	at := func(s int) time.Time { return base.Add(time.Duration(s) * time.Second) }

	if latest, err := pgsql.LatestQueryTime(ctx, pool, "a"); err != nil || !latest.IsZero() {
		t.Fatalf("latest before any query: %v, %v; want zero", latest, err)
	}
	for _, p := range []struct {
		instance   string
		at         time.Time
		wantOthers time.Time
	}{
		{"a", at(10), time.Time{}},
		{"b", at(5), at(10)},
		{"a", at(3), at(5)}, // late and older: a stays at 10
		{"b", at(20), at(10)},
	} {
		others, err := pgsql.PublishQueryTime(ctx, pool, p.instance, p.at)
		if err != nil || !others.Equal(p.wantOthers) {
			t.Fatalf("publish %s at %v: others' latest %v, %v; want %v", p.instance, p.at, others, err, p.wantOthers)
		}
	}
	for instance, want := range map[string]time.Time{"a": at(20), "b": at(10), "c": at(20)} {
		if latest, err := pgsql.LatestQueryTime(ctx, pool, instance); err != nil || !latest.Equal(want) {
			t.Errorf("latest but %s: %v, %v; want %v", instance, latest, err, want)
		}
	}

	// Both gone for two days: only the one holding the latest time stays.
	if _, err := pool.Exec(ctx, `UPDATE query_times SET published_at = now() - interval '2 days'`); err != nil {
		t.Fatal(err)
	}
	if err := pgsql.PruneQueryTimes(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var left []string
	rows, _ := pool.Query(ctx, `SELECT instance FROM query_times ORDER BY instance`)
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		left = append(left, s)
	}
	if err := rows.Err(); err != nil || len(left) != 1 || left[0] != "b" {
		t.Errorf("after pruning: %v (%v), want [b], the latest", left, err)
	}
	if latest, err := pgsql.LatestQueryTime(ctx, pool, "x"); err != nil || !latest.Equal(at(20)) {
		t.Errorf("latest after pruning: %v, %v; want %v", latest, err, at(20))
	}
}

// A payload is "<instance> <µs>"; anything else is refused.
func TestParseQueryTime(t *testing.T) {
	t.Parallel()
	if instance, at, err := pgsql.ParseQueryTime("a1b2 1596128973000001"); err != nil || instance != "a1b2" ||
		!at.Equal(time.Date(2020, 7, 30, 17, 9, 33, 1000, time.UTC)) {
		t.Errorf("ParseQueryTime: %q %v %v", instance, at, err)
	}
	for _, bad := range []string{"", "1596128973000001", "a x", "a -5"} {
		if _, _, err := pgsql.ParseQueryTime(bad); err == nil {
			t.Errorf("ParseQueryTime(%q): no error", bad)
		}
	}
}
