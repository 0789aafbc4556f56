package metrics_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd/internal/pgtest"
	"github.com/pointsd/pointsd/metrics"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// pointsd_oldest_snapshot_age_seconds is read at each scrape: 0 with no
// snapshot held, the holder's age while another session holds one, and
// left out of the scrape (which still succeeds) when the database cannot
// be read.
func TestOldestSnapshotAgeIsReadAtEachScrape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Users: 100})
	pool := pgtest.Pool(t, url)
	m := metrics.New()
	if err := m.RegisterHorizon(pool); err != nil {
		t.Fatal(err)
	}
	const name = "pointsd_oldest_snapshot_age_seconds"
	if got := scrape(t, m, name); got == nil || *got != 0 {
		t.Fatalf("no snapshot held: %s = %v, want 0", name, got)
	}

	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Close(ctx) }()
	tx, err := holder.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT count(*) FROM users`); err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, m, name); got == nil || *got <= 0 || *got > 60 {
		t.Errorf("a snapshot just taken: %s = %v, want a few seconds at most", name, got)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := scrape(t, m, name); got == nil || *got != 0 {
		t.Errorf("snapshot ended: %s = %v, want 0", name, got)
	}

	pool.Close()
	if got := scrape(t, m, name); got != nil {
		t.Errorf("database closed: %s = %v, want it left out", name, *got)
	}
}

// scrape gathers m and returns the value of the unlabelled gauge name, nil
// if it is not there.
func scrape(t *testing.T, m *metrics.Metrics, name string) *float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			v := f.GetMetric()[0].GetGauge().GetValue()
			return &v
		}
	}
	return nil
}
