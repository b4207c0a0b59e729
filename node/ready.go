package node

import "context"

// WaitReady returns once the node enforces: its interface is up, the
// nftables table holds the sets of the policy in force and WireGuard has its
// peers — the state a service manager should wait for (systemd's READY=1).
// It does not wait for the join: a node whose seeds are down still filters
// and serves its API. It returns ctx's error if ctx ends first.
func (n *Node) WaitReady(ctx context.Context) error {
	for {
		changed := n.changed.wait() // before reading ready: no missed notify
		n.mu.Lock()
		ready := n.ready
		n.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
