package acl

import (
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// batchConn sends element batches on a netlink socket of its own, in the
// network namespace (or test dial) of the Firewall's nftables.Conn.
type batchConn struct {
	netns    int
	testDial nltest.Func
	conn     *netlink.Conn
}

func (c *batchConn) dial() error {
	if c.conn != nil {
		return nil
	}
	if c.testDial != nil {
		c.conn = nltest.Dial(c.testDial)
		return nil
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: c.netns})
	if err != nil {
		return fmt.Errorf("open netlink socket: %w", err)
	}
	// Errors without a copy of the failed message (up to 64 KiB each: a
	// refused batch would overflow the receive buffer). Not with extended
	// acknowledgements: the library misreads capped ones.
	if err := conn.SetOption(netlink.CapAcknowledge, true); err != nil {
		_ = conn.Close()
		return fmt.Errorf("netlink socket option NETLINK_CAP_ACK: %w", err)
	}
	c.conn = conn
	return nil
}

// send sends msgs (a batch, see elemBatch.messages) and returns the first
// error the kernel reported; the kernel then applied none of it.
func (c *batchConn) send(msgs []netlink.Message) error {
	if err := c.dial(); err != nil {
		return err
	}
	if c.testDial == nil {
		if err := c.fitBuffers(msgs); err != nil {
			return err
		}
	}
	sent, err := c.conn.SendMessages(msgs)
	if err != nil {
		_ = c.close() // the next batch starts on a new socket
		return fmt.Errorf("send netlink batch: %w", err)
	}
	// The kernel processes a batch within the sending call, so its replies
	// (only errors: no message asks for an acknowledgement; at most one per
	// message) are queued by now: read what is there.
	var first error
	for range len(msgs) + 1 {
		if c.testDial == nil {
			ready, err := c.readReady()
			if err != nil {
				_ = c.close()
				return errors.Join(first, err)
			}
			if !ready {
				break
			}
		}
		replies, err := c.conn.Receive()
		if err != nil && first == nil {
			first = describeBatchError(sent, err)
		}
		if c.testDial != nil || (err == nil && len(replies) == 0) {
			break
		}
	}
	return first
}

// replyRoom is the receive buffer room kept per message for its error
// reply (a small message, but the socket accounts each reply's whole
// buffer): a refused batch queues one reply per message, and a reply that
// does not fit is lost while the socket reports ENOBUFS instead of the
// kernel's errors.
const replyRoom = 2048

// fitBuffers makes the socket's send buffer hold the whole batch (the
// kernel takes a batch in one message) and its receive buffer an error
// reply for every message.
func (c *batchConn) fitBuffers(msgs []netlink.Message) error {
	size := 0
	for _, m := range msgs {
		size += unix.NLMSG_HDRLEN + len(m.Data)
	}
	for _, b := range []struct {
		what string
		want int
		get  func() (int, error)
		set  func(int) error
	}{
		{"write", size, c.conn.WriteBuffer, c.conn.SetWriteBuffer},
		{"read", replyRoom * len(msgs), c.conn.ReadBuffer, c.conn.SetReadBuffer},
	} {
		cur, err := b.get()
		if err != nil {
			return fmt.Errorf("netlink %s buffer size: %w", b.what, err)
		}
		if cur < b.want {
			if err := b.set(b.want); err != nil {
				return fmt.Errorf("enlarge netlink %s buffer to %d bytes: %w", b.what, b.want, err)
			}
		}
	}
	return nil
}

// describeBatchError names the message an error reply refers to.
func describeBatchError(sent []netlink.Message, err error) error {
	var op *netlink.OpError
	if errors.As(err, &op) {
		for _, m := range sent {
			if m.Header.Sequence == op.Sequence {
				typ := uint16(m.Header.Type) & 0xff
				name, ok := map[uint16]string{unix.NFT_MSG_NEWSETELEM: "add elements", unix.NFT_MSG_DELSETELEM: "delete elements",
					unix.NFT_MSG_NEWRULE: "replace rule"}[typ]
				if !ok {
					name = fmt.Sprintf("message type %d", typ)
				}
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return err
}

// readReady reports whether a reply is queued (poll with zero timeout).
func (c *batchConn) readReady() (bool, error) {
	rc, err := c.conn.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("netlink socket: %w", err)
	}
	var n int
	var perr error
	if err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, perr = unix.Poll(fds, 0)
			if perr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return false, fmt.Errorf("netlink socket: %w", err)
	}
	if perr != nil {
		return false, fmt.Errorf("poll netlink socket: %w", perr)
	}
	return n > 0, nil
}

func (c *batchConn) close() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}
