package gossip

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	metrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/memberlist"
)

// transport is memberlist's UDP/TCP transport bound to one address. It does
// what memberlist's NetTransport does, with two differences: outgoing dials
// are cancelled by Shutdown (so a join attempt to an unreachable seed does
// not hold Shutdown for TCPTimeout), and a received packet is handed on in
// a buffer of its own size (NetTransport allocates and clears a fresh
// 64 KiB buffer for every packet it receives and hands that on, so each
// packet of about a kilobyte costs 64 KiB of garbage until memberlist is
// done with it).
type transport struct {
	ctx    context.Context
	logger *log.Logger
	tcpLn  *net.TCPListener
	udpLn  *net.UDPConn

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	shutdown atomic.Bool
	done     chan struct{}  // closed by Shutdown: a listener stops handing on
	wg       sync.WaitGroup // listener goroutines

	// dropTo holds destinations ("ip:port") whose traffic is dropped: tests
	// simulate an unreachable peer without shutting it down. nil in production.
	dropTo atomic.Pointer[map[string]bool]
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

const (
	// udpReadBufSize is the read buffer of the UDP listener: the largest
	// datagram (memberlist's own listener reads into as much).
	udpReadBufSize = 65536
	// udpSocketBufSize is the socket receive buffer asked for (halved until
	// the kernel accepts it), as memberlist does.
	udpSocketBufSize = 2 << 20
)

// newTransport binds bindAddr:port, TCP and UDP on the same port (port 0: a
// free one, retried like memberlist does since both must get the same
// number), and starts the listeners.
func newTransport(ctx context.Context, bindAddr string, port int, logger *log.Logger) (*transport, error) {
	ip, err := netip.ParseAddr(bindAddr)
	if err != nil {
		return nil, fmt.Errorf("bind gossip to %s: %w", bindAddr, err)
	}
	tries := 1
	if port == 0 {
		tries = 10
	}
	for range tries {
		var tcpLn *net.TCPListener
		var udpLn *net.UDPConn
		tcpLn, udpLn, err = listen(ip, port)
		if err == nil {
			t := &transport{
				ctx: ctx, logger: logger, tcpLn: tcpLn, udpLn: udpLn,
				packetCh: make(chan *memberlist.Packet),
				streamCh: make(chan net.Conn),
				done:     make(chan struct{}),
			}
			t.wg.Add(2)
			go t.tcpListen()
			go t.udpListen()
			return t, nil
		}
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	return nil, fmt.Errorf("bind gossip to %s port %d: %w", bindAddr, port, err)
}

var errPortTaken = errors.New("UDP port taken")

// listen opens the TCP listener and the UDP socket on one port.
func listen(ip netip.Addr, port int) (*net.TCPListener, *net.UDPConn, error) {
	tcpLn, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		return nil, nil, fmt.Errorf("TCP listener: %w", err)
	}
	port = tcpLn.Addr().(*net.TCPAddr).Port
	udpLn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		_ = tcpLn.Close()
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return nil, nil, fmt.Errorf("UDP listener: %w", err)
	}
	if err := setUDPRecvBuf(udpLn); err != nil {
		_ = tcpLn.Close()
		_ = udpLn.Close()
		return nil, nil, fmt.Errorf("resize UDP receive buffer: %w", err)
	}
	return tcpLn, udpLn, nil
}

// setUDPRecvBuf asks for udpSocketBufSize, halving until the kernel agrees.
func setUDPRecvBuf(c *net.UDPConn) error {
	var err error
	for size := udpSocketBufSize; size > 0; size /= 2 {
		if err = c.SetReadBuffer(size); err == nil {
			return nil
		}
	}
	return err
}

// GetAutoBindPort is the bound port (the one the kernel chose for port 0).
func (t *transport) GetAutoBindPort() int { return t.tcpLn.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr is the given address and port, or (none given) the
// bound ones. The bind address is never unspecified (Config refuses it).
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		return t.tcpLn.Addr().(*net.TCPAddr).IP, t.GetAutoBindPort(), nil
	}
	a := net.ParseIP(ip)
	if a == nil {
		return nil, 0, fmt.Errorf("failed to parse advertise address %q", ip)
	}
	if a4 := a.To4(); a4 != nil {
		a = a4
	}
	return a, port, nil
}

// WriteTo sends a packet (dropped when the destination is blocked).
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.dropped(addr) {
		return time.Now(), nil
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", addr)
		if rerr != nil {
			return time.Time{}, rerr
		}
		ap = ua.AddrPort()
	}
	_, err = t.udpLn.WriteToUDPAddrPort(b, ap)
	return time.Now(), err
}

// WriteToAddress sends a packet (dropped when the destination is blocked).
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

// PacketCh delivers received packets.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh delivers accepted streams.
func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// DialTimeout dials a stream peer; Shutdown cancels it.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.dropped(addr) {
		return nil, fmt.Errorf("dial %s: destination blocked", addr)
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(t.ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// memberlist sets no deadline when it sends a user message: bound every
	// stream by the dial timeout (memberlist moves it where it sets its own)
	// and close it on Shutdown, so a stalled peer cannot hold a sender.
	if timeout > 0 {
		_ = conn.SetDeadline(time.Now().Add(timeout))
	}
	c := &ownedConn{Conn: conn}
	c.stop = context.AfterFunc(t.ctx, func() { _ = conn.Close() })
	return c, nil
}

// DialAddressTimeout dials a stream peer; Shutdown cancels it.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// Shutdown closes the listeners and waits for their goroutines.
func (t *transport) Shutdown() error {
	if t.shutdown.Swap(true) {
		return nil
	}
	close(t.done)
	_ = t.tcpLn.Close()
	_ = t.udpLn.Close()
	t.wg.Wait()
	return nil
}

// ownedConn is a dialed stream closed by Shutdown.
type ownedConn struct {
	net.Conn
	stop func() bool
}

func (c *ownedConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

func (t *transport) dropped(addr string) bool {
	m := t.dropTo.Load()
	return m != nil && (*m)[addr]
}

// tcpListen hands accepted streams to memberlist until Shutdown, backing
// off on accept errors (5 ms doubling to 1 s, as memberlist does).
func (t *transport) tcpListen() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		conn, err := t.tcpLn.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.logger.Printf("[ERR] memberlist: Error accepting TCP connection: %v", err)
			select { // Shutdown does not wait out the backoff
			case <-time.After(delay):
			case <-t.done:
				return
			}
			continue
		}
		delay = 0
		select {
		case t.streamCh <- conn:
		case <-t.done:
			_ = conn.Close()
			return
		}
	}
}

// udpListen hands received packets to memberlist until Shutdown. It reads
// into one buffer and hands on a copy of the datagram's own size.
func (t *transport) udpListen() {
	defer t.wg.Done()
	buf := make([]byte, udpReadBufSize)
	for {
		n, addr, err := t.udpLn.ReadFromUDP(buf)
		ts := time.Now()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			t.logger.Printf("[ERR] memberlist: Error reading UDP packet: %v", err)
			continue
		}
		if n < 1 {
			t.logger.Printf("[ERR] memberlist: UDP packet too short (%d bytes) %s", n, memberlist.LogAddress(addr))
			continue
		}
		metrics.IncrCounter([]string{"memberlist", "udp", "received"}, float32(n))
		b := make([]byte, n)
		copy(b, buf)
		p := &memberlist.Packet{Buf: b, From: addr, Timestamp: ts}
		select {
		case t.packetCh <- p:
		case <-t.done:
			return
		}
	}
}
