package partition

import (
	"testing"
	"time"
)

func TestName(t *testing.T) {
	for _, c := range []struct {
		i, n int
		want string
	}{
		{0, 60, "users_p00"}, {59, 60, "users_p59"}, {3, 4, "users_p3"},
		{7, 1000, "users_p007"}, {0, 1, "users_p0"}, {10, 11, "users_p10"},
	} {
		if got := Name(c.i, c.n); got != c.want {
			t.Errorf("Name(%d, %d) = %q, want %q", c.i, c.n, got, c.want)
		}
	}
}

func TestCycleStartIsAWallClockMultiple(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		period   time.Duration
		t, start string
	}{
		{time.Minute, "2020-07-30T17:09:33.5Z", "2020-07-30T17:09:00Z"},
		{time.Minute, "2020-07-30T17:09:00Z", "2020-07-30T17:09:00Z"},
		{time.Minute, "2020-07-30T17:09:59.999999999Z", "2020-07-30T17:09:00Z"},
		{10 * time.Second, "2020-07-30T17:09:33Z", "2020-07-30T17:09:30Z"},
		{2 * time.Second, "2020-07-30T17:09:33.9Z", "2020-07-30T17:09:32Z"},
		{time.Hour, "2020-07-30T17:09:33Z", "2020-07-30T17:00:00Z"},
		// The boundary does not depend on the time zone of t.
		{time.Minute, "2020-07-30T19:09:33+02:00", "2020-07-30T17:09:00Z"},
	} {
		s := Slots{Period: c.period, Buckets: 60}
		got := s.CycleStart(at(c.t))
		if !got.Equal(at(c.start)) {
			t.Errorf("period %v: CycleStart(%s) = %s, want %s", c.period, c.t, got.UTC(), c.start)
		}
		if next := s.NextCycle(at(c.t)); !next.Equal(at(c.start).Add(c.period)) {
			t.Errorf("period %v: NextCycle(%s) = %s, want %s", c.period, c.t, next.UTC(), at(c.start).Add(c.period))
		}
	}
}

func TestSlotsSpreadBucketsAcrossThePeriod(t *testing.T) {
	start := time.Date(2020, 7, 30, 17, 9, 0, 0, time.UTC)
	for _, c := range []struct {
		period  time.Duration
		buckets int
		i       int
		want    time.Duration
	}{
		{time.Minute, 60, 0, 0},
		{time.Minute, 60, 1, time.Second},
		{time.Minute, 60, 59, 59 * time.Second},
		{time.Minute, 7, 3, time.Minute * 3 / 7},
		{10 * time.Second, 60, 30, 5 * time.Second},
		{time.Second, 1000, 999, 999 * time.Millisecond},
	} {
		s := Slots{Period: c.period, Buckets: c.buckets}
		if got := s.Slot(start, c.i).Sub(start); got != c.want {
			t.Errorf("%d buckets in %v: slot %d at +%v, want +%v", c.buckets, c.period, c.i, got, c.want)
		}
	}
	// Every slot lies inside the period, and they are in bucket order.
	s := Slots{Period: time.Minute, Buckets: 60}
	for i := 1; i < s.Buckets; i++ {
		if !s.Slot(start, i).After(s.Slot(start, i-1)) || !s.Slot(start, i).Before(start.Add(s.Period)) {
			t.Fatalf("slot %d at %v is out of order or outside the period", i, s.Slot(start, i))
		}
	}
}

func TestSpreadLeavesTheEndOfThePeriodFree(t *testing.T) {
	start := time.Date(2020, 7, 30, 17, 9, 0, 0, time.UTC)
	s := Slots{Period: 30 * time.Second, Buckets: 60, Spread: 27 * time.Second}
	if got := s.Slot(start, 59).Sub(start); got != 27*time.Second*59/60 {
		t.Errorf("last slot at +%v, want +%v", got, 27*time.Second*59/60)
	}
	if got := s.Slot(start, 30).Sub(start); got != 13500*time.Millisecond {
		t.Errorf("slot 30 at +%v, want +13.5s", got)
	}
	// A spread of zero, or longer than the period, is the whole period.
	for _, spread := range []time.Duration{0, time.Minute} {
		s.Spread = spread
		if got := s.Slot(start, 30).Sub(start); got != 15*time.Second {
			t.Errorf("spread %v: slot 30 at +%v, want +15s", spread, got)
		}
	}
}

// A cycle without a period (run by hand) or without buckets has no slots:
// the leader rewrites its buckets at once, and the caches do not rely on a
// slot.
func TestNoSlotsWithoutAPeriod(t *testing.T) {
	start := time.Date(2020, 7, 30, 17, 9, 0, 0, time.UTC)
	for _, s := range []Slots{{Buckets: 60}, {Period: time.Minute}, {Period: -time.Second, Buckets: 4}} {
		if got := s.Slot(start, 1); !got.IsZero() {
			t.Errorf("%+v: slot 1 at %v, want none", s, got)
		}
	}
}
