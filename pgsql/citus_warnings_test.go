package pgsql_test

import (
	"strings"
	"testing"

	"github.com/pointsd/pointsd/pgsql"
)

// The settings that let a worker cut off without a reset stop the cycles
// for long are named; the recommended ones, and plain PostgreSQL, are not.
func TestCitusWarnings(t *testing.T) {
	good := "sslmode=disable tcp_user_timeout=10000 keepalives_idle=5"
	for _, tc := range []struct {
		name     string
		c        pgsql.Citus
		contains []string // one warning per entry, each containing it
	}{
		{"plain PostgreSQL", pgsql.Citus{}, nil},
		{"no worker yet", pgsql.Citus{Installed: true, NodeConnInfo: "", RecoverInterval: "1min"}, nil},
		{"recommended", pgsql.Citus{Installed: true, Workers: 2, NodeConnInfo: good, RecoverInterval: "1s"}, nil},
		{"10 s is enough", pgsql.Citus{Installed: true, Workers: 2, NodeConnInfo: good, RecoverInterval: "10s"}, nil},
		{"Citus's defaults", pgsql.Citus{Installed: true, Workers: 2, NodeConnInfo: "sslmode=require", RecoverInterval: "1min"},
			[]string{"sets no tcp_user_timeout", "recover_2pc_interval is 1min"}},
		{"recovery off", pgsql.Citus{Installed: true, Workers: 2, NodeConnInfo: good, RecoverInterval: "-1"},
			[]string{"recover_2pc_interval is -1"}},
		{"recovery daily", pgsql.Citus{Installed: true, Workers: 2, NodeConnInfo: good, RecoverInterval: "1d"},
			[]string{"recover_2pc_interval is 1d"}},
		{"11 s", pgsql.Citus{Installed: true, Workers: 2, NodeConnInfo: good, RecoverInterval: "11s"},
			[]string{"recover_2pc_interval is 11s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.c.Warnings()
			if len(got) != len(tc.contains) {
				t.Fatalf("Warnings() = %q, want %d", got, len(tc.contains))
			}
			for i, want := range tc.contains {
				if !strings.Contains(got[i], want) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], want)
				}
			}
		})
	}
}
