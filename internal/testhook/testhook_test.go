package testhook

import "testing"

// A nil hook tells nobody; a hook tells its function of every event.
func TestEmit(t *testing.T) {
	var nobody *Hook[int]
	nobody.Emit(1)
	var got []int
	h := New(func(e int) { got = append(got, e) })
	h.Emit(1)
	h.Emit(2)
	if len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("told %v, want [1 2]", got)
	}
}
