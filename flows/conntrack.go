package flows

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// conntrackList lists the conntrack table of one family (netlink.ConntrackTableList
// or a fake).
type conntrackList func(netlink.ConntrackTableType, netlink.InetFamily) ([]*netlink.ConntrackFlow, error)

// dumpRetries is how often a conntrack dump interrupted by table changes is
// tried again before its (possibly incomplete) result is taken.
const dumpRetries = 3

// InboundFlows lists the connections in the conntrack table of the calling
// thread's network namespace whose original destination is one of local
// (this node's overlay addresses; IPv4 and IPv6): Src and Dst are the
// original source and destination, Proto the protocol, Port the original
// destination port (TCP, UDP; 0 otherwise). Each (Src, Dst, Proto, Port)
// appears once, sorted by Dst, Src, Proto, Port; Time is zero. A dump that
// stays interrupted by concurrent table changes yields what it read.
func InboundFlows(local []netip.Addr) ([]Packet, error) {
	return inboundFlows(netlink.ConntrackTableList, local)
}

func inboundFlows(list conntrackList, local []netip.Addr) ([]Packet, error) {
	want := make(map[netip.Addr]bool, len(local))
	var has4, has6 bool
	for _, a := range local {
		a = a.Unmap()
		want[a] = true
		has4 = has4 || a.Is4()
		has6 = has6 || a.Is6()
	}
	seen := make(map[Packet]bool)
	var out []Packet
	for _, fam := range []struct {
		on     bool
		family netlink.InetFamily
		name   string
	}{{has4, unix.AF_INET, "IPv4"}, {has6, unix.AF_INET6, "IPv6"}} {
		if !fam.on {
			continue
		}
		var flows []*netlink.ConntrackFlow
		var err error
		for range dumpRetries {
			flows, err = list(netlink.ConntrackTable, fam.family)
			if !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("list %s conntrack table: %w", fam.name, err)
		}
		for _, f := range flows {
			if f == nil {
				continue
			}
			dst, ok1 := netip.AddrFromSlice(f.Forward.DstIP)
			src, ok2 := netip.AddrFromSlice(f.Forward.SrcIP)
			if !ok1 || !ok2 {
				continue
			}
			dst, src = dst.Unmap(), src.Unmap()
			if !want[dst] {
				continue
			}
			p := Packet{Src: src, Dst: dst, Proto: f.Forward.Protocol}
			if hasPorts(p.Proto) {
				p.Port = f.Forward.DstPort
			}
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b Packet) int {
		return cmp.Or(a.Dst.Compare(b.Dst), a.Src.Compare(b.Src), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
	})
	return out, nil
}
