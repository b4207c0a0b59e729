package harness

import (
	"fmt"
	"strconv"
)

// SetUnderlayMTU sets the MTU of node n's underlay path: its eth0, the
// bridge-side veth and the bridge (a bridge takes the lowest MTU of its
// ports, so raise every node's link before expecting jumbo frames between
// two of them). A daemon with `mtu: auto` follows within its periodic
// recheck (lowering within ~5 s, raising after a 10 s hold) or at restart.
func (c *Cluster) SetUnderlayMTU(n *Node, mtu int) error {
	m := strconv.Itoa(mtu)
	for _, s := range [][]string{
		{"-n", c.underlay, "link", "set", n.veth, "mtu", m},
		{"-n", n.Namespace, "link", "set", "eth0", "mtu", m},
		{"-n", c.underlay, "link", "set", "br0", "mtu", m},
	} {
		if err := ip(s...); err != nil {
			return fmt.Errorf("set underlay MTU of %s to %d: %w", n.Name, mtu, err)
		}
	}
	return nil
}
