package main

import (
	"context"
	"errors"
	"net/url"

	"github.com/pointsd/pointsd/internal/faultproxy"
)

// tcpFreeze puts the leader's every connection to PostgreSQL behind a
// proxy, freezes the proxy mid-cycle for grayHold, then thaws it. The other
// replica connects directly.
func tcpFreeze(ctx context.Context, x *sc) error {
	u, err := url.Parse(x.e.pg.url)
	if err != nil {
		return err
	}
	p, err := faultproxy.Start(ctx, u.Host)
	if err != nil {
		return err
	}
	defer p.Close()
	viaProxy, err := p.URL(x.e.pg.url)
	if err != nil {
		return err
	}
	// The proxied replica starts first, so it leads.
	if err := x.startSpecs(ctx, replicaSpec{mode: "rolling", dbURL: viaProxy}, replicaSpec{mode: "rolling", dbURL: x.e.pg.url}); err != nil {
		return err
	}
	leader, err := x.leader(ctx)
	if err != nil {
		return err
	}
	if leader != x.replicas[0] {
		return errors.New("the replica behind the proxy, started first, does not lead")
	}
	if err := x.waitMidCycle(ctx, "rolling"); err != nil {
		return err
	}
	x.faultBegins(ctx)
	p.Freeze()
	x.res.didf("2 replicas, rolling; the leader (%s) reaches PostgreSQL through a TCP proxy, frozen mid-cycle (sockets open, no byte passes) for %s; %s connects directly",
		leader.name, grayHold, x.replicas[1].name)
	return x.grayFault(ctx, leader, false, func() error {
		p.Thaw()
		return nil
	})
}
