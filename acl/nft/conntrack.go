package nft

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DeleteConntrack removes, through netlink conntrack in the caller's network
// namespace, every conntrack entry that involves one of addrs as a peer: its
// original source is one of addrs (flows the removed peer opened), or its
// original destination or reply source is (flows opened towards it, whose
// reply direction a later holder of the address could otherwise use). Call it
// when a peer is removed (leave, revoke, dead past the grace) after its set
// elements are gone, so that nobody can ride its established flows. It
// returns how many entries were deleted.
func DeleteConntrack(addrs []netip.Addr) (int, error) {
	return deleteConntrack(nil, addrs)
}

// deleteConntrack is DeleteConntrack on handle h (nil: the package handle of
// the current network namespace).
func deleteConntrack(h *netlink.Handle, addrs []netip.Addr) (int, error) {
	f := peerFlowFilter{}
	for _, a := range addrs {
		if a.IsValid() {
			f[a.Unmap().WithZone("")] = true
		}
	}
	if len(f) == 0 {
		return 0, nil
	}
	del := netlink.ConntrackDeleteFilters
	if h != nil {
		del = h.ConntrackDeleteFilters
	}
	total := 0
	var errs []error
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		n, err := del(netlink.ConntrackTable, fam, f)
		total += int(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("delete conntrack entries (family %d): %w", fam, err))
		}
	}
	return total, errors.Join(errs...)
}

// peerFlowFilter matches flows that involve one of its addresses as the
// remote end (see DeleteConntrack).
type peerFlowFilter map[netip.Addr]bool

func (f peerFlowFilter) has(ip net.IP) bool {
	a, ok := netip.AddrFromSlice(ip)
	return ok && f[a.Unmap()]
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter.
func (f peerFlowFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	return f.has(flow.Forward.SrcIP) || f.has(flow.Forward.DstIP) || f.has(flow.Reverse.SrcIP)
}
