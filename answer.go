package pointsd

// Answer is what GET / answers, read in one snapshot: up to two users
// above the floor, with what their truth depends on (the schedule, and
// which buckets are rewritten), so that a cache knows how long it holds.
// GET / sends the users; the previous query's time is the API's own.
type Answer struct {
	Schedule
	Users   []User // at most 2, points strictly above Floor
	Buckets int
	// FirstPending is the lowest bucket not yet rewritten in Cycle,
	// NonePending if none is left.
	FirstPending int
}

// User is one user of an answer, with the bucket it lives in and the last
// cycle that rewrote that bucket. Its JSON is GET /'s: the id and points.
type User struct {
	ID          int64 `json:"id"`
	Points      int   `json:"points"`
	Bucket      int   `json:"-"`
	BucketCycle int64 `json:"-"`
}

// NoBucket is User.Bucket (and BucketCycle) for a user in a partition that
// no bucket maps: one created by hand. Nothing is known of when it changes.
const NoBucket = -2

// NonePending is Answer.FirstPending when every bucket is rewritten in the
// cycle.
const NonePending = -1
