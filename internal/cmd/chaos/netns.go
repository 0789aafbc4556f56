package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// A network namespace with a veth pair to the host, for a replica whose
// network can be cut without a reset: packets dropped by iptables inside
// the namespace, so that neither end hears anything, not even a RST.
// PostgreSQL listens on the host end's address too (see netnsSettings).
const (
	nsName   = "pointsd-chaos"
	vethHost = "pchaos-h"
	vethNS   = "pchaos-n"
	hostAddr = "10.231.0.1"
	nsAddr   = "10.231.0.2"
)

// setupNetns makes the namespace afresh, removing what a killed run left.
// It needs root, ip and iptables.
func setupNetns(ctx context.Context) error {
	if os.Geteuid() != 0 {
		return errors.New("not root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (make chaos installs iptables)", tool)
		}
	}
	cleanupNetns()
	for _, args := range [][]string{
		{"ip", "netns", "add", nsName},
		{"ip", "link", "add", vethHost, "type", "veth", "peer", "name", vethNS},
		{"ip", "link", "set", vethNS, "netns", nsName},
		{"ip", "addr", "add", hostAddr + "/30", "dev", vethHost},
		{"ip", "link", "set", vethHost, "up"},
		{"ip", "netns", "exec", nsName, "ip", "addr", "add", nsAddr + "/30", "dev", vethNS},
		{"ip", "netns", "exec", nsName, "ip", "link", "set", vethNS, "up"},
		{"ip", "netns", "exec", nsName, "ip", "link", "set", "lo", "up"},
	} {
		if err := sh(ctx, args...); err != nil {
			cleanupNetns()
			return err
		}
	}
	return nil
}

// cleanupNetns removes the namespace and the veth pair, if there.
func cleanupNetns() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = sh(ctx, "ip", "link", "del", vethHost) // absent: nothing to remove
	_ = sh(ctx, "ip", "netns", "del", nsName)  // likewise
}

// blackhole drops every packet in and out of the namespace (on) or stops
// dropping them (off).
func blackhole(ctx context.Context, on bool) error {
	op := "-D"
	if on {
		op = "-I"
	}
	for _, rule := range [][]string{{"INPUT", "-i", vethNS}, {"OUTPUT", "-o", vethNS}} {
		args := append([]string{"ip", "netns", "exec", nsName, "iptables", op, rule[0]}, append(rule[1:], "-j", "DROP")...)
		if err := sh(ctx, args...); err != nil && on {
			return err
		}
	}
	return nil
}

// netnsSettings are the cluster settings that let the namespace reach
// PostgreSQL: it also listens on the host end of the pair.
func netnsSettings() map[string]string {
	return map[string]string{"listen_addresses": "127.0.0.1," + hostAddr}
}

// allowNetns lets the namespace's address connect (trust, like the local
// ones: see localpg) and reloads the server's configuration.
func allowNetns(ctx context.Context, c *cluster) error {
	hba := filepath.Join(c.dir, "pg_hba.conf")
	b, err := os.ReadFile(hba) //nolint:gosec // the harness's own cluster
	if err != nil {
		return err
	}
	line := "host all all " + nsAddr + "/32 trust"
	if !bytes.Contains(b, []byte(line)) {
		b = append(b, []byte("\n# chaos: the replica in network namespace "+nsName+"\n"+line+"\n")...)
		if err := os.WriteFile(hba, b, 0o600); err != nil { //nolint:gosec // as above
			return err
		}
	}
	conn, err := pgx.Connect(ctx, c.adminURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(ctx) }() // the reload is the point; a failed goodbye changes nothing
	_, err = conn.Exec(ctx, `SELECT pg_reload_conf()`)
	return err
}

func sh(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput() //nolint:gosec // the harness's own commands
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// netnsBlackhole runs the leader in the namespace, blackholes it mid bucket
// (rolling) or mid strict transaction for grayHold, then heals it. The
// other replica is on the host.
func netnsBlackhole(mode string) func(context.Context, *sc) error {
	return func(ctx context.Context, x *sc) error {
		if x.e.netnsErr != nil {
			return fmt.Errorf("no network namespace: %w", x.e.netnsErr)
		}
		u, err := url.Parse(x.e.pg.url)
		if err != nil {
			return err
		}
		u.Host = hostAddr + ":" + u.Port()
		inNS := replicaSpec{mode: mode, dbURL: u.String(), host: nsAddr, wrap: []string{"ip", "netns", "exec", nsName}}
		if err := x.startSpecs(ctx, inNS, replicaSpec{mode: mode, dbURL: x.e.pg.url}); err != nil {
			return err
		}
		leader, err := x.leader(ctx)
		if err != nil {
			return err
		}
		if leader != x.replicas[0] {
			return errors.New("the replica in the namespace, started first, does not lead")
		}
		x.prober.drop(leader) // cut off: the harness cannot reach it either
		what := "mid strict transaction"
		if mode == "strict" {
			err = x.waitMidCycle(ctx, mode)
		} else if what, err = x.waitBucketInFlight(ctx); err != nil {
			err = x.waitMidCycle(ctx, mode)
		}
		if err != nil {
			return err
		}
		x.faultBegins(ctx)
		defer func() { _ = blackhole(context.Background(), false) }() // whatever happens, heal
		if err := blackhole(ctx, true); err != nil {
			return err
		}
		x.res.didf("2 replicas, %s; the leader (%s) in network namespace %s, its packets dropped (iptables DROP, no reset) %s for %s; %s on the host",
			mode, leader.name, nsName, what, grayHold, x.replicas[1].name)
		return x.grayFault(ctx, leader, true, func() error {
			x.noteOrphans(ctx, "at the heal")
			return blackhole(ctx, false)
		})
	}
}

// waitBucketInFlight returns while the namespace's replica has a bucket
// transaction open (one with a transaction id), for at most three periods.
func (x *sc) waitBucketInFlight(ctx context.Context) (string, error) {
	deadline := time.Now().Add(3 * x.period)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var n int
		err := x.e.pg.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE client_addr = $1 AND backend_xid IS NOT NULL`, nsAddr).Scan(&n)
		if err == nil && n > 0 {
			return "mid bucket transaction", nil
		}
	}
	x.res.notef("no bucket transaction caught in flight within %s: cut mid-cycle instead", 3*x.period)
	return "mid-cycle", errors.New("none caught")
}

// noteOrphans notes the namespace's sessions PostgreSQL still holds.
func (x *sc) noteOrphans(ctx context.Context, when string) {
	var open, inTx int
	if err := x.e.pg.db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE backend_xid IS NOT NULL)
		FROM pg_stat_activity WHERE client_addr = $1`, nsAddr).Scan(&open, &inTx); err == nil {
		x.res.notef("%s PostgreSQL still held %d sessions of the cut-off replica, %d of them in a writing transaction", when, open, inTx)
	}
}
