package flows

import (
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestInboundFlowsLive lists live TCP connections into namespace b from its
// conntrack table: connections to b's addresses appear once per (src, dst,
// proto, port); b's own outbound connection does not.
func TestInboundFlowsLive(t *testing.T) {
	p := newNSPair(t)
	var (
		mu      sync.Mutex
		closers []io.Closer
		wg      sync.WaitGroup
	)
	keep := func(c io.Closer) { mu.Lock(); closers = append(closers, c); mu.Unlock() }
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range closers {
			c.Close()
		}
		mu.Unlock()
		wg.Wait() // the accept loops end with their listeners
		mu.Lock()
		for _, c := range closers {
			c.Close()
		}
		mu.Unlock()
	})
	listen := func(ns *testNS, addr string) {
		ns.Do(func() error {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			keep(l)
			wg.Go(func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					keep(c)
				}
			})
			return nil
		})
	}
	listen(p.b, net.JoinHostPort(bAddr4, "7000"))
	listen(p.b, net.JoinHostPort(bAddr6, "7000"))
	listen(p.a, net.JoinHostPort(aAddr4, "7001"))
	dial := func(ns *testNS, addr string) {
		ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				return err
			}
			keep(c)
			return nil
		})
	}
	dial(p.a, net.JoinHostPort(bAddr4, "7000"))
	dial(p.a, net.JoinHostPort(bAddr4, "7000")) // a second connection: same flow
	dial(p.a, net.JoinHostPort(bAddr6, "7000"))
	dial(p.b, net.JoinHostPort(aAddr4, "7001")) // outbound from b

	want := []Packet{
		{Src: mustAddr(aAddr4), Dst: mustAddr(bAddr4), Proto: ProtoTCP, Port: 7000},
		{Src: mustAddr(aAddr6), Dst: mustAddr(bAddr6), Proto: ProtoTCP, Port: 7000},
	}
	var got []Packet
	var err error
	p.b.Do(func() error { got, err = InboundFlows([]netip.Addr{mustAddr(bAddr4), mustAddr(bAddr6)}); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("InboundFlows =\n%+v\nwant\n%+v", got, want)
	}
	// Only the IPv4 address: only the IPv4 flow.
	p.b.Do(func() error { got, err = InboundFlows([]netip.Addr{mustAddr(bAddr4)}); return nil })
	if err != nil || !slices.Equal(got, want[:1]) {
		t.Fatalf("InboundFlows(v4 only) = %+v, %v; want %+v", got, err, want[:1])
	}
	// b's outbound connection is in the table: the filter left it out.
	p.b.Do(func() error { got, err = InboundFlows([]netip.Addr{mustAddr(aAddr4)}); return nil })
	outbound := []Packet{{Src: mustAddr(bAddr4), Dst: mustAddr(aAddr4), Proto: ProtoTCP, Port: 7001}}
	if err != nil || !slices.Equal(got, outbound) {
		t.Fatalf("InboundFlows(a's address) in b = %+v, %v; want %+v", got, err, outbound)
	}
}

// TestOpenNFLOGKeepsFamilyLogger: OpenNFLOG does not take over the
// namespace's default IPv4/IPv6 logger (no NFULNL_CFG_CMD_PF_BIND).
func TestOpenNFLOGKeepsFamilyLogger(t *testing.T) {
	p := newNSPair(t)
	var before, after []byte
	p.b.Do(func() error {
		var err error
		if before, err = os.ReadFile("/proc/thread-self/net/netfilter/nf_log"); err != nil {
			return err
		}
		r, err := OpenNFLOG(testGroup, discardLogger())
		if err != nil {
			return err
		}
		defer r.Close()
		after, err = os.ReadFile("/proc/thread-self/net/netfilter/nf_log")
		return err
	})
	if string(before) != string(after) {
		t.Fatalf("nf_log changed:\nbefore\n%s\nafter\n%s", before, after)
	}
}
