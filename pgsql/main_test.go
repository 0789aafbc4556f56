package pgsql_test

import (
	"testing"

	"github.com/pointsd/pointsd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
