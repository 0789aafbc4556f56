// Package partition is the pure arithmetic of pointsd's buckets: what the
// partitions are called and when, inside a period, each bucket's slot
// begins. It knows nothing of the database or the clock; callers pass times.
package partition

import "fmt"

// Name is the table name of partition i of n: users_p00 … users_p59 for 60,
// zero-padded so that names sort in bucket order.
func Name(i, n int) string {
	return fmt.Sprintf("users_p%0*d", len(fmt.Sprint(n-1)), i)
}
