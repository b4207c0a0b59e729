package harness

import (
	"fmt"
	"strings"
	"time"
)

// PublicKeys returns the public keys of nodes, in order.
func PublicKeys(nodes ...*Node) ([]string, error) {
	keys := make([]string, len(nodes))
	for i, n := range nodes {
		k, err := n.PublicKey()
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	return keys, nil
}

// MeshProblem returns nil when every node's status lists every other node
// with state "up", else an error naming what is missing. It returns an
// Abort error when a node's process has exited.
func MeshProblem(nodes ...*Node) error {
	keys, err := PublicKeys(nodes...)
	if err != nil {
		return Abort(err)
	}
	var missing []string
	for _, n := range nodes {
		if err := n.ExitError(); err != nil {
			return Abort(err)
		}
		st, err := n.Status()
		if err != nil {
			missing = append(missing, err.Error())
			continue
		}
		for j, o := range nodes {
			if o == n {
				continue
			}
			p, ok := st.Peer(keys[j])
			switch {
			case !ok:
				missing = append(missing, fmt.Sprintf("%s does not list %s", n.Name, o.Name))
			case p.State != StateUp && p.State != StateQuarantined: // quarantined: a live WireGuard peer
				missing = append(missing, fmt.Sprintf("%s sees %s %q (reason %q)", n.Name, o.Name, p.State, p.Reason))
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("mesh incomplete: %s", strings.Join(missing, "; "))
	}
	return nil
}

// WaitMesh waits until MeshProblem reports nil and returns how long that
// took.
func WaitMesh(timeout time.Duration, nodes ...*Node) (time.Duration, error) {
	start := time.Now()
	err := WaitFor(timeout, func() error { return MeshProblem(nodes...) })
	return time.Since(start), err
}

// PingWithin pings addr from n until a reply arrives or timeout passes
// (the first packets may wait for a WireGuard handshake). It returns how
// many attempts it took.
func PingWithin(n *Node, addr string, timeout time.Duration) (int, error) {
	tries := 0
	err := WaitFor(timeout, func() error {
		if err := n.ExitError(); err != nil {
			return Abort(err)
		}
		tries++
		return n.Ping(addr)
	})
	return tries, err
}
