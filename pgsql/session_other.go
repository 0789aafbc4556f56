//go:build !linux

package pgsql

import "syscall"

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist: the
// keepalives and the server's settings still bound the session.
func setUserTimeout(string, string, syscall.RawConn) error { return nil }
