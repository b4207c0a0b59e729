package flows

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func ctFlow(src, dst string, proto uint8, sport, dport uint16) *netlink.ConntrackFlow {
	return &netlink.ConntrackFlow{Forward: netlink.IPTuple{SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst), Protocol: proto, SrcPort: sport, DstPort: dport}}
}

func TestInboundFlowsFilters(t *testing.T) {
	tables := map[netlink.InetFamily][]*netlink.ConntrackFlow{
		unix.AF_INET: {
			ctFlow("100.80.1.2", "100.80.3.7", 6, 40000, 5432),
			ctFlow("100.80.1.2", "100.80.3.7", 6, 40001, 5432), // same flow, other source port
			ctFlow("100.80.1.2", "100.80.3.7", 1, 0, 0),
			ctFlow("100.80.3.7", "100.80.1.2", 6, 50000, 80),  // outbound: not ours
			ctFlow("192.0.2.1", "192.0.2.11", 17, 7946, 7946), // underlay
			ctFlow("100.80.1.3", "100.80.3.7", 17, 1, 53),
			nil,
			{Forward: netlink.IPTuple{SrcIP: nil, DstIP: net.ParseIP("100.80.3.7")}},
		},
		unix.AF_INET6: {
			ctFlow("fd5e:6d00::1", "fd5e:6d00::7", 6, 1, 8080),
			ctFlow("fd5e:6d00::7", "fd5e:6d00::1", 6, 1, 8080),
		},
	}
	var asked []netlink.InetFamily
	list := func(tt netlink.ConntrackTableType, fam netlink.InetFamily) ([]*netlink.ConntrackFlow, error) {
		if tt != netlink.ConntrackTable {
			t.Fatalf("table %d", tt)
		}
		asked = append(asked, fam)
		return tables[fam], nil
	}
	got, err := inboundFlows(list, []netip.Addr{mustAddr("100.80.3.7"), mustAddr("fd5e:6d00::7")})
	if err != nil {
		t.Fatal(err)
	}
	want := []Packet{
		{Src: mustAddr("100.80.1.2"), Dst: mustAddr("100.80.3.7"), Proto: 1},
		{Src: mustAddr("100.80.1.2"), Dst: mustAddr("100.80.3.7"), Proto: 6, Port: 5432},
		{Src: mustAddr("100.80.1.3"), Dst: mustAddr("100.80.3.7"), Proto: 17, Port: 53},
		{Src: mustAddr("fd5e:6d00::1"), Dst: mustAddr("fd5e:6d00::7"), Proto: 6, Port: 8080},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("InboundFlows =\n%+v\nwant\n%+v", got, want)
	}
	if !slices.Equal(asked, []netlink.InetFamily{unix.AF_INET, unix.AF_INET6}) {
		t.Fatalf("listed families %v", asked)
	}

	// Only IPv4 local addresses: the IPv6 table is not read.
	asked = nil
	if _, err := inboundFlows(list, []netip.Addr{mustAddr("100.80.3.7")}); err != nil || !slices.Equal(asked, []netlink.InetFamily{unix.AF_INET}) {
		t.Fatalf("v4 only: asked %v, err %v", asked, err)
	}
}

func TestInboundFlowsErrors(t *testing.T) {
	boom := errors.New("boom")
	if _, err := inboundFlows(func(netlink.ConntrackTableType, netlink.InetFamily) ([]*netlink.ConntrackFlow, error) {
		return nil, boom
	}, []netip.Addr{mustAddr("100.80.3.7")}); !errors.Is(err, boom) {
		t.Fatalf("err %v, want boom", err)
	}
	// An interrupted dump is retried, and its last result taken.
	calls := 0
	got, err := inboundFlows(func(netlink.ConntrackTableType, netlink.InetFamily) ([]*netlink.ConntrackFlow, error) {
		calls++
		return []*netlink.ConntrackFlow{ctFlow("100.80.1.2", "100.80.3.7", 6, 1, calls2port(calls))}, netlink.ErrDumpInterrupted
	}, []netip.Addr{mustAddr("100.80.3.7")})
	if err != nil || calls != dumpRetries || len(got) != 1 || got[0].Port != uint16(dumpRetries) {
		t.Fatalf("interrupted: got %+v, err %v, calls %d", got, err, calls)
	}
	calls = 0
	got, err = inboundFlows(func(netlink.ConntrackTableType, netlink.InetFamily) ([]*netlink.ConntrackFlow, error) {
		calls++
		if calls == 1 {
			return nil, netlink.ErrDumpInterrupted
		}
		return []*netlink.ConntrackFlow{ctFlow("100.80.1.2", "100.80.3.7", 6, 1, 9)}, nil
	}, []netip.Addr{mustAddr("100.80.3.7")})
	if err != nil || calls != 2 || len(got) != 1 {
		t.Fatalf("retry: got %+v, err %v, calls %d", got, err, calls)
	}
}

func calls2port(n int) uint16 { return uint16(n) }
