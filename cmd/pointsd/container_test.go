package main

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pointsd/pointsd/internal/localpg"
	"github.com/pointsd/pointsd/internal/pgtest"
)

// TestAgainstAContainerPostgres runs the operator's first steps (migrate,
// seed, a cycle) against PostgreSQL in a container started through the
// Docker API with dockertest: the path internal/localpg takes on a machine
// with an engine but no server binaries. Skipped without an engine unless
// POINTSD_REQUIRE_DOCKER=1 (CI, where podman serves the API).
func TestAgainstAContainerPostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := localpg.StartContainer(ctx, localpg.Config{Settings: map[string]string{"fsync": "off"}})
	if errors.Is(err, localpg.ErrNoEngine) && os.Getenv("POINTSD_REQUIRE_DOCKER") != "1" {
		t.Skip(err.Error() + " (eval \"$(internal/scripts/ensure-podman.sh)\" starts podman's)")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Stop(context.Background()); err != nil {
			t.Errorf("remove the container: %v", err)
		}
	}()

	env := map[string]string{"DATABASE_URL": srv.URL}
	for _, args := range [][]string{{"migrate", "-partitions", "4"}, {"seed", "-users", "2000"}} {
		if code, out, stderr := runPointsd(t, ctx, env, args...); code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", strings.Join(args, " "), code, out, stderr)
		}
	}
	code, out, stderr := runPointsd(t, ctx, env, "cycle", "-mode", "strict")
	if want := "cycle 1 (strict): 2000 users in 4 buckets in "; code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("cycle: exit %d, %q %q; want %q", code, out, stderr, want)
	}
	pool := pgtest.Pool(t, srv.URL)
	if off := pgtest.OffDraw(t, pool); off != 0 {
		t.Errorf("%d users do not hold their bucket's draw after the cycle", off)
	}
}
