package nft

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/segmesh/segmesh/acl"
)

// The kernel counts what identities admit: connections exactly (the
// first packet of each), packets and bytes of the original direction; what
// is denied is not counted.
func TestRootObserved(t *testing.T) {
	p := newMeshPair(t)
	p.apply(enf([]acl.Identity{{ID: 1, TCP: []acl.PortRange{pr(8080, 8080)}, ICMP: true}}, src(cli4, 1), src(cli6, 1)))
	const conns = 5
	for range conns {
		c := p.mustConnect(srv4, 8080)
		_ = c.Close()
	}
	// One bulk transfer: bytes counted within 5% of the payload.
	const bulk = 4 << 20
	c, err := p.dial(srv4, 8080, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan int64)
	go func() { n, _ := io.CopyN(io.Discard, c, bulk); done <- n }() // the server echoes
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(make([]byte, bulk)); err != nil {
		t.Fatal(err)
	}
	if n := <-done; n != bulk {
		t.Fatalf("echoed %d of %d bytes", n, bulk)
	}
	p.mustTimeOut(srv4, 9090) // denied: not observed
	p.mustConnect(srv6, 8080)
	p.client.Run("ping", "-c", "2", "-W", "2", srv4.String())

	obs, err := p.fw.Observed()
	if err != nil {
		t.Fatal(err)
	}
	get := func(a netip.Addr, proto uint8, port uint16) Observation {
		for _, o := range obs {
			if o.Src == a && o.Proto == proto && o.Port == port {
				return o
			}
		}
		return Observation{}
	}
	t.Logf("observed: %+v", obs)
	if o := get(cli4, acl.ProtoTCP, 8080); o.Connections != conns+1 || o.Bytes < bulk || o.Bytes > bulk*105/100 {
		t.Errorf("cli4 tcp/8080: %+v, want %d connections and %d..%d bytes", o, conns+1, bulk, bulk*105/100)
	}
	if o := get(cli6, acl.ProtoTCP, 8080); o.Connections != 1 || o.Packets == 0 {
		t.Errorf("cli6 tcp/8080: %+v, want 1 connection", o)
	}
	if o := get(cli4, 1, 0); o.Packets != 2 || o.Connections != 1 {
		t.Errorf("cli4 icmp: %+v, want 2 packets in 1 connection", o)
	}
	if o := get(cli4, acl.ProtoTCP, 9090); o != (Observation{}) {
		t.Errorf("the denied tcp/9090 was observed: %+v", o)
	}
}
