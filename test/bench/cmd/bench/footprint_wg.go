package main

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// A simulated member of the footprint group is a gossip member with a real
// userspace WireGuard endpoint (wireguard-go on a packet-less TUN) that has
// the daemon as its only peer: the daemon completes genuine handshakes with
// it and exchanges keepalives, as with a live server. Without it every
// simulated peer would stay unreachable and the daemon would hold one staged
// keepalive (a 64 KiB wireguard-go buffer) per peer and retry handshakes,
// which is the footprint of a mesh whose peers are all down.

// simWG is one simulated member's WireGuard device.
type simWG struct {
	dev *device.Device
}

// startSimWG runs a WireGuard device on UDP port listenPort with private key
// priv and peer (the daemon, base64 public key) at endpoint, keepalive as the
// daemon configures its peers.
func startSimWG(priv mesh.Key, listenPort int, peer string, endpoint string) (*simWG, error) {
	pk, err := base64.StdEncoding.DecodeString(peer)
	if err != nil || len(pk) != 32 {
		return nil, fmt.Errorf("peer key %q: bad base64 key", peer)
	}
	dev := device.NewDevice(newNullTUN(), &udpBind{}, device.NewLogger(device.LogLevelSilent, ""))
	uapi := fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\n",
		hex.EncodeToString(priv[:]), listenPort, hex.EncodeToString(pk), endpoint, int(mesh.Keepalive/time.Second))
	if err := dev.IpcSet(uapi); err != nil {
		dev.Close()
		return nil, fmt.Errorf("configure simulated WireGuard on port %d: %w", listenPort, err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("simulated WireGuard on port %d up: %w", listenPort, err)
	}
	return &simWG{dev: dev}, nil
}

func (s *simWG) close() { s.dev.Close() }

// startSimWGNodes is startSimNodes whose members also run startSimWG against
// the daemon (peer, endpoint).
func startSimWGNodes(n int, key []byte, label string, addr string, port, listenPort func(i int) int, seeds []string,
	tags map[string]string, peer, endpoint string) ([]*simNode, []*simWG, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var nodes []*simNode
	var wgs []*simWG
	for i := 0; i < n; i++ {
		priv, err := mesh.GenerateKey()
		if err != nil {
			return nodes, wgs, err
		}
		pub := priv.PublicKey()
		rec := gossip.Record{
			Format: gossip.RecordFormat, Name: fmt.Sprintf("sim-%d", i), PublicKey: pub.String(), ListenPort: listenPort(i),
			Address4: mesh.Candidate4(netip.MustParsePrefix("100.80.0.0/16"), pub, 0), Claimed: time.Now().UnixNano(),
			Address6: mesh.Address6(netip.MustParsePrefix("fd5e:6d00::/48"), pub), Tags: tags,
		}
		w, err := startSimWG(priv, listenPort(i), peer, endpoint)
		if err != nil {
			return nodes, wgs, err
		}
		wgs = append(wgs, w)
		s := simSeeds(seeds, nodes)
		docs := &docStore{}
		g, err := gossip.New(gossip.Config{
			NodeName: rec.PublicKey, BindAddr: addr, BindPort: port(i), Keys: [][]byte{key}, Label: label,
			Seeds: s, Documents: docs, Logger: log,
		}, rec)
		if err != nil {
			return nodes, wgs, fmt.Errorf("gossip node %d: %w", i, err)
		}
		g.Start()
		nodes = append(nodes, &simNode{g: g, rec: rec, docs: docs})
		if i%50 == 49 {
			time.Sleep(200 * time.Millisecond) // let joins land in batches
		}
	}
	return nodes, wgs, nil
}

func closeSimWG(wgs []*simWG) {
	for _, w := range wgs {
		w.close()
	}
}

// udpBind is a minimal IPv4 conn.Bind that moves one datagram per call:
// the simulated devices only carry handshakes and keepalives, and 199
// devices with wireguard-go's default batch (128 buffers of 64 KiB per
// receive path; its StdNetBind needs the full batch when UDP GRO is on)
// would cost GiBs.
type udpBind struct {
	mu sync.Mutex
	c  *net.UDPConn
}

var _ conn.Bind = (*udpBind)(nil)

func (b *udpBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: int(port)})
	if err != nil {
		return nil, 0, err
	}
	b.c = c
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, from, err := c.ReadFromUDPAddrPort(bufs[0])
		if err != nil {
			return 0, err
		}
		sizes[0], eps[0] = n, udpEndpoint(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
		return 1, nil
	}
	return []conn.ReceiveFunc{recv}, uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
}

func (b *udpBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == nil {
		return nil
	}
	err := b.c.Close()
	b.c = nil
	return err
}

func (b *udpBind) SetMark(uint32) error { return nil }
func (b *udpBind) BatchSize() int       { return 1 }

func (b *udpBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	c := b.c
	b.mu.Unlock()
	if c == nil {
		return net.ErrClosed
	}
	to, ok := ep.(udpEndpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	for _, buf := range bufs {
		if _, err := c.WriteToUDPAddrPort(buf, netip.AddrPort(to)); err != nil {
			return err
		}
	}
	return nil
}

func (b *udpBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return udpEndpoint(ap), nil
}

// udpEndpoint is a peer address of udpBind.
type udpEndpoint netip.AddrPort

func (e udpEndpoint) ClearSrc()           {}
func (e udpEndpoint) SrcToString() string { return "" }
func (e udpEndpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e udpEndpoint) DstToBytes() []byte  { b, _ := netip.AddrPort(e).MarshalBinary(); return b }
func (e udpEndpoint) DstIP() netip.Addr   { return netip.AddrPort(e).Addr() }
func (e udpEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

// nullTUN is a TUN that never yields packets and drops what it is given.
type nullTUN struct {
	events chan tun.Event
	closed chan struct{}
	once   sync.Once
}

func newNullTUN() *nullTUN {
	t := &nullTUN{events: make(chan tun.Event, 1), closed: make(chan struct{})}
	t.events <- tun.EventUp
	return t
}

func (t *nullTUN) File() *os.File { return nil }

func (t *nullTUN) Read([][]byte, []int, int) (int, error) {
	<-t.closed
	return 0, os.ErrClosed
}

func (t *nullTUN) Write(bufs [][]byte, _ int) (int, error) { return len(bufs), nil }
func (t *nullTUN) MTU() (int, error)                       { return 1420, nil }
func (t *nullTUN) Name() (string, error)                   { return "simwg", nil }
func (t *nullTUN) Events() <-chan tun.Event                { return t.events }
func (t *nullTUN) BatchSize() int                          { return 1 }

func (t *nullTUN) Close() error {
	t.once.Do(func() {
		close(t.closed)
		close(t.events)
	})
	return nil
}
