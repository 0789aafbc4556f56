package pointsd

import "fmt"

// Mode is how a cycle rewrites the users.
type Mode string

const (
	// Rolling rewrites one bucket per transaction, spread across the period.
	Rolling Mode = "rolling"
	// Strict rewrites every user and the floor in one transaction.
	Strict Mode = "strict"
)

// Modes lists every mode, for metrics labelled by mode.
var Modes = []Mode{Rolling, Strict}

// Validate says why m is not a mode.
func (m Mode) Validate() error {
	switch m {
	case Rolling, Strict:
		return nil
	}
	return fmt.Errorf("must be %s or %s", Rolling, Strict)
}

// UnmarshalText accepts "rolling" or "strict", so a Mode is a flag.
func (m *Mode) UnmarshalText(b []byte) error {
	mode := Mode(b)
	if err := mode.Validate(); err != nil {
		return err
	}
	*m = mode
	return nil
}

// MarshalText returns the mode's name.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m), nil }

// String returns the mode's name, for logs and metric labels.
func (m Mode) String() string { return string(m) }
