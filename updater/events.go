package updater

// Event is something the updater did, told to Config.TestHook as it
// happens: tests wait on these instead of polling the database.
type Event struct {
	Kind   EventKind
	Cycle  int64  // the cycle, for the cycle and bucket events
	Bucket int    // the bucket, for EventBucket
	Result Result // for EventCycleFinished
	Err    error  // for EventCycleFailed
}

// EventKind says what an Event is.
type EventKind int

// The events, in the order a leader's life brings them.
const (
	// EventCannotLead: this replica cannot do the leader's work, and does
	// not campaign (Status says why).
	EventCannotLead EventKind = iota + 1
	// EventLeading: this replica took the leader lock.
	EventLeading
	// EventCycleStarted: a cycle's floor (and in strict mode every user)
	// committed.
	EventCycleStarted
	// EventBucket: a rolling bucket's rewrite committed.
	EventBucket
	// EventCycleFinished: a cycle ended with every bucket rewritten.
	EventCycleFinished
	// EventCycleFailed: a cycle ended with an error (cut short by shutdown
	// or by the loss of leadership included).
	EventCycleFailed
	// EventFollowing: this replica gave up or lost the leader lock.
	EventFollowing
	// EventLeaseRenewed: the leader renewed its lease (every LeaderPoll).
	EventLeaseRenewed
	// EventEvicted: this replica ended the sessions of a leader whose
	// lease went stale, to lead in its place.
	EventEvicted
)

// emit tells Config.TestHook, if set, of e.
func (u *Updater) emit(e Event) { u.cfg.TestHook.Emit(e) }
