package gossip

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// A peer that accepts a stream and never reads must not hold a sender past
// Shutdown: cancelling the transport's context closes dialed streams.
func TestTransportShutdownUnblocksStalledStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // held open, never read
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &transport{ctx: ctx}
	conn, err := tr.DialTimeout(ln.Addr().String(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	defer peer.Close()

	var written atomic.Int64
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			n, err := conn.Write(buf)
			written.Add(int64(n))
			if err != nil {
				done <- err
				return
			}
		}
	}()
	waitFor(t, 10*time.Second, "the socket buffers to fill", func() bool { return written.Load() >= 1<<20 })
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("write succeeded after shutdown")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stalled write not interrupted by shutdown")
	}
	if err := conn.Close(); err == nil {
		t.Log("close after shutdown returned nil") // already closed by shutdown: either is fine
	}
}

func TestTransportDropsBlockedDestinations(t *testing.T) {
	tr := &transport{ctx: context.Background()}
	block := map[string]bool{"127.0.0.1:9": true}
	tr.dropTo.Store(&block)
	if _, err := tr.DialTimeout("127.0.0.1:9", time.Second); err == nil {
		t.Fatal("dial to a blocked destination succeeded")
	}
	if _, err := tr.WriteTo([]byte("x"), "127.0.0.1:9"); err != nil {
		t.Fatalf("blocked packet write should be silently dropped: %v", err)
	}
}

func newTestTransport(t testing.TB) *transport {
	t.Helper()
	tr, err := newTransport(context.Background(), "127.0.0.1", 0, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// A received datagram is handed on whole, in a buffer of its own size (not
// a slice of a 64 KiB read buffer), from its sender's address.
func TestTransportPacketIsExactCopy(t *testing.T) {
	tr := newTestTransport(t)
	defer tr.Shutdown()
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(tr.GetAutoBindPort()))
	for _, size := range []int{1, 1200, 9000} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if _, err := peer.WriteToUDPAddrPort(msg, to); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-tr.PacketCh():
			if !bytes.Equal(p.Buf, msg) || cap(p.Buf) != len(msg) {
				t.Errorf("%d bytes sent: got %d bytes, capacity %d", size, len(p.Buf), cap(p.Buf))
			}
			if p.From.String() != peer.LocalAddr().String() || p.Timestamp.IsZero() {
				t.Errorf("from %v at %v, want %v", p.From, p.Timestamp, peer.LocalAddr())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d-byte packet not delivered", size)
		}
	}
	// And the other way: WriteTo reaches the peer.
	if _, err := tr.WriteTo([]byte("pong"), peer.LocalAddr().String()); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "pong" || from != to {
		t.Fatalf("peer got %q from %v (%v), want pong from %v", buf[:n], from, err, to)
	}
}

// Shutdown returns while a received packet or an accepted stream waits
// for a reader that is gone (memberlist stopped reading).
func TestTransportShutdownWithUndeliveredTraffic(t *testing.T) {
	tr := newTestTransport(t)
	addr := fmt.Sprintf("127.0.0.1:%d", tr.GetAutoBindPort())
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	s, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- tr.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown blocked on undelivered traffic")
	}
	if err := tr.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestTransportAdvertiseAddr(t *testing.T) {
	tr := newTestTransport(t)
	defer tr.Shutdown()
	ip, port, err := tr.FinalAdvertiseAddr("10.1.2.3", 7000)
	if err != nil || !ip.Equal(net.IPv4(10, 1, 2, 3)) || len(ip) != 4 || port != 7000 {
		t.Errorf("given address: %v %d %v", ip, port, err)
	}
	ip, port, err = tr.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) || port != tr.GetAutoBindPort() {
		t.Errorf("bound address: %v %d %v", ip, port, err)
	}
	if _, _, err := tr.FinalAdvertiseAddr("not-an-ip", 1); err == nil {
		t.Error("bad advertise address accepted")
	}
}

// BenchmarkTransportReceive is one gossip-sized datagram (1,200 bytes)
// through the loopback into PacketCh: this transport against memberlist's
// NetTransport, which allocates a fresh 64 KiB buffer per packet received.
func BenchmarkTransportReceive(b *testing.B) {
	logger := log.New(io.Discard, "", 0)
	for _, impl := range []string{"segmesh", "memberlist"} {
		b.Run(impl, func(b *testing.B) {
			var (
				port     int
				packets  <-chan *memberlist.Packet
				shutdown func() error
			)
			if impl == "segmesh" {
				tr := newTestTransport(b)
				port, packets, shutdown = tr.GetAutoBindPort(), tr.PacketCh(), tr.Shutdown
			} else {
				nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, Logger: logger})
				if err != nil {
					b.Fatal(err)
				}
				port, packets, shutdown = nt.GetAutoBindPort(), nt.PacketCh(), nt.Shutdown
			}
			defer shutdown()
			peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer peer.Close()
			to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
			msg := bytes.Repeat([]byte{0xa5}, 1200)
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := peer.WriteToUDPAddrPort(msg, to); err != nil {
					b.Fatal(err)
				}
				if p := <-packets; len(p.Buf) != len(msg) {
					b.Fatalf("got %d bytes", len(p.Buf))
				}
			}
		})
	}
}
