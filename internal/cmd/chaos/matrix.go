package main

// scenarios is the fault matrix, in the order it runs. Each scenario starts
// from a healthy cluster (env.restore) and ends with sc.conclude, which
// checks the invariants.
func scenarios() []scenario {
	return []scenario{
		{"restart-fast-rolling", "PostgreSQL restarted (-m fast) mid rolling cycle", pgRestart("fast", "rolling")},
		{"restart-immediate-rolling", "PostgreSQL restarted (-m immediate) mid rolling cycle", pgRestart("immediate", "rolling")},
		{"restart-fast-strict", "PostgreSQL restarted (-m fast) mid strict cycle", pgRestart("fast", "strict")},
		{"restart-immediate-strict", "PostgreSQL restarted (-m immediate) mid strict cycle", pgRestart("immediate", "strict")},
		{"pg-down-30s", "PostgreSQL down for 30 s", pgDown},
		{"leader-kill", "leader SIGKILLed, two replicas", leaderKill},
		{"terminate-sessions", "every pointsd session terminated every second for 20 s", terminateSessions},
		{"sigterm-rolling", "SIGTERM to the leader mid rolling cycle", sigterm("rolling")},
		{"sigterm-strict", "SIGTERM to the leader mid strict cycle", sigterm("strict")},
		{"idle-connections", "2000 idle TCP and 2000 keep-alive HTTP connections held", idleConnections},
		{"hostile-requests", "slowloris, oversized headers and bodies", hostileRequests},
		{"method-flood", "20,000 requests with distinct methods", methodFloodScenario},
		{"overload", "512 connections of GET / for 10 s", overloadScenario},
		{"short-outage", "PostgreSQL stopped ~3 s mid rolling cycle, one replica", shortOutage},
		{"read-only-replica", "a replica with a SELECT-only role started first", readOnlyReplica},
		{"future-start", "cycle_state.started_at set one hour ahead", futureStart},
		{"damage-partition", "a users partition dropped", damage("partition")},
		{"damage-cycle-state", "the cycle_state row deleted", damage("cycle-state")},
		{"damage-cycle-backwards", "the cycle number set 5 back", damage("cycle-backwards")},
		{"leader-sigstop-rolling", "leader SIGSTOPped 30 s mid rolling cycle, then SIGCONT", leaderSigstop("rolling")},
		{"leader-sigstop-strict", "leader SIGSTOPped 30 s mid strict cycle, then SIGCONT", leaderSigstop("strict")},
		{"netns-blackhole-rolling", "the leader's network dropped 30 s mid bucket (netns, no reset)", netnsBlackhole("rolling")},
		{"netns-blackhole-strict", "the leader's network dropped 30 s mid strict transaction (netns, no reset)", netnsBlackhole("strict")},
		{"pgbouncer-2-replicas", "two replicas behind PgBouncer (transaction mode), direct URL for the lock", pgbouncerReplicas},
		{"tcp-freeze", "the leader's path to PostgreSQL frozen 30 s (no byte, no reset)", tcpFreeze},
		{"held-locks", "VACUUM FULL of a partition, then ALTER TABLE users, queued behind readers", heldLocks},
		{"old-snapshot", "a REPEATABLE READ snapshot held for 10 periods (90 s at least)", oldSnapshot},
		{"role-statement-timeout", "strict, 1M users, the role's statement_timeout 500 ms", roleStatementTimeout},
		{"disk-full-trigger", "one partition's updates fail with SQLSTATE 53100 (disk full)", diskFullTrigger},
		{"citus-worker-blackhole-2pc", "a Citus worker's packets dropped 30 s from a bucket's COMMIT PREPARED on (no reset)", citusBlackhole2PC},
	}
}
