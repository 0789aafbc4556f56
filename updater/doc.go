// Package updater re-draws every user's points and the qualifying floor once
// per period: the cycle loop, the rolling and strict modes, the workers and
// the leader election among replicas. It owns no SQL (that is package sql)
// and no HTTP.
package updater
