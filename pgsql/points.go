package pgsql

import "math/rand/v2"

// MaxPoints is the most points a user can have, and the highest floor.
// Points and floors are drawn uniformly from 0..MaxPoints inclusive. The
// CHECK constraints of migrations 00001 and 00002 say the same in SQL.
const MaxPoints = 100

// DrawFloor draws a floor from 0..MaxPoints inclusive with r.
func DrawFloor(r *rand.Rand) int { return r.IntN(MaxPoints + 1) }

// NoneQualify reports whether no user can be above floor: nobody has more
// than MaxPoints, so an answer under it is empty whatever the users hold.
func NoneQualify(floor int) bool { return floor >= MaxPoints }
