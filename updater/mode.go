package updater

import "fmt"

// Mode is how a cycle rewrites the users.
type Mode string

const (
	// Rolling rewrites one bucket per transaction, spread across the period.
	Rolling Mode = "rolling"
	// Strict rewrites every user and the floor in one transaction.
	Strict Mode = "strict"
)

// UnmarshalText accepts "rolling" or "strict", so a Mode is a flag.
func (m *Mode) UnmarshalText(b []byte) error {
	switch Mode(b) {
	case Rolling, Strict:
		*m = Mode(b)
		return nil
	}
	return fmt.Errorf("must be %s or %s", Rolling, Strict)
}

// MarshalText returns the mode's name.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m), nil }
