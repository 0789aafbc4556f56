package main

import (
	"context"
	"strings"
	"testing"
)

// pointsd size needs no database: it tells an operator what N users need,
// and says plainly when one primary cannot keep the period.
func TestSizeRecommends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	code, out, errOut := runPointsd(t, ctx, nil, "size", "-users", "10000000", "-period", "30s", "-db-cores", "4", "-db-memory-gib", "16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"10000000 users re-drawn every 30s on a database of 4 cores and 16.0 GiB",
		"partitions", "pointsd migrate -partitions", "serve -workers 2", "shared_buffers = ", "max_wal_size = ", "one primary     fits"} {
		if !strings.Contains(out, want) {
			t.Errorf("size output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runPointsd(t, ctx, nil, "size", "-users", "1000000000", "-db-cores", "8")
	if code != 0 || !strings.Contains(out, "does NOT fit") || !strings.Contains(out, "docs/SCALING.md") {
		t.Errorf("1e9 users on 8 cores: exit %d, want 0 and a plain 'does NOT fit' pointing at docs/SCALING.md:\n%s", code, out)
	}
}
