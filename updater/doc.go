// Package updater re-draws every user's points and the qualifying floor once
// per period: the cycle loop, the rolling and strict modes, the workers and
// the leader election among replicas. It owns no SQL (that is package
// pgsql) and no HTTP. The domain types it works with (Mode, Cycle, State)
// are package pointsd's.
//
// The leader's choices are pure functions, tested row by row with no
// database: decide says what to do next from the published state and the
// clock, and judge and after say what to do once a step has ended. The loop
// in lead.go only reads, waits and writes what they return.
package updater
