package gossip

import (
	"context"
	"fmt"
	"log"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// transport is memberlist's UDP/TCP transport bound to one address, with
// outgoing dials that Shutdown cancels (so a join attempt to an unreachable
// seed does not hold Shutdown for TCPTimeout).
type transport struct {
	*memberlist.NetTransport
	ctx context.Context
	// dropTo holds destinations ("ip:port") whose traffic is dropped: tests
	// simulate an unreachable peer without shutting it down. nil in production.
	dropTo atomic.Pointer[map[string]bool]
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

// newTransport binds bindAddr:port (port 0: a free port, retried like
// memberlist does since TCP and UDP must get the same number).
func newTransport(ctx context.Context, bindAddr string, port int, logger *log.Logger) (*transport, error) {
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{bindAddr},
			BindPort:  port,
			Logger:    logger,
		})
		if err == nil {
			return &transport{NetTransport: nt, ctx: ctx}, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("bind gossip to %s port %d: %w", bindAddr, port, err)
}

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

// ownedConn is a dialed stream closed by Shutdown.
type ownedConn struct {
	net.Conn
	stop func() bool
}

func (c *ownedConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// DialAddressTimeout dials a stream peer; Shutdown cancels it.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

// WriteTo sends a packet (dropped when the destination is blocked).
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.dropped(addr) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteTo(b, addr)
}

// WriteToAddress sends a packet (dropped when the destination is blocked).
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.dropped(a.Addr) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *transport) dropped(addr string) bool {
	m := t.dropTo.Load()
	return m != nil && (*m)[addr]
}
