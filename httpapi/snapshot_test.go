package httpapi

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pointsd/pointsd/internal/pgtest"
)

// /status names the session holding the oldest snapshot, with the users
// table's size, and shows null once it has ended; a young snapshot is not
// old, and not a problem.
func TestStatusNamesTheOldestSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDB(t, pgtest.Options{Partitions: 3, Users: 300})
	_, srv := newAPI(t, url, Config{NoCache: true})
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "pg_dump"
	holder, err := pgx.ConnectConfig(ctx, cfg)
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

	resp, body := get(t, srv.URL+"/status")
	s, _ := body["oldest_snapshot"].(map[string]any)
	if resp.StatusCode != 200 || s == nil {
		t.Fatalf("/status with a snapshot held: %s %v", resp.Status, body)
	}
	want := map[string]any{"holder": "session", "pid": float64(holder.PgConn().PID()), "name": "pg_dump",
		"user": cfg.User, "state": "idle in transaction", "old": false}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("/status oldest_snapshot.%s = %#v, want %#v", k, s[k], v)
		}
	}
	if b, _ := s["users_table_bytes"].(float64); b <= 0 {
		t.Errorf("/status oldest_snapshot.users_table_bytes = %v, want the table's size", s["users_table_bytes"])
	}
	if p, ok := body["problems"].([]any); !ok || len(p) != 0 {
		t.Errorf("/status problems = %#v, want [] for a young snapshot", body["problems"])
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, srv.URL+"/status"); body["oldest_snapshot"] != nil {
		t.Errorf("/status after the snapshot ended: oldest_snapshot %v, want null", body["oldest_snapshot"])
	}
}
