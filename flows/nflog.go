package flows

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Snaplen is the copy range NFLOG asks the kernel for: at most this many
// bytes of each packet reach the reader (the rule's own snaplen may cut
// shorter). It matches nft.LogSnaplen: enough for an IPv6 header with a few
// extension headers and the transport ports.
const Snaplen = 128

// readBuffer is the socket receive buffer NFLOG asks for (the kernel caps it
// at net.core.rmem_max); overruns beyond it are counted by Dropped.
const readBuffer = 1 << 20

// NFLOG reads the packets that netfilter logs to one NFLOG group
// (nfnetlink_log), e.g. those of nft `log group N`. It is bound to the
// network namespace it was opened in. Run may be called by one goroutine at
// a time; Dropped and Close are safe for concurrent use.
type NFLOG struct {
	group uint16
	conn  *netlink.Conn
	log   *slog.Logger
	warn  *limitedLog

	running  atomic.Bool
	closed   atomic.Bool
	dropped  atomic.Uint64
	overruns atomic.Uint64 // ENOBUFS seen (tests)

	mu      sync.Mutex        // guards pending
	pending []netlink.Message // packet messages received while binding

	// Owned by the goroutine in Run.
	seqOn   bool   // the kernel numbers packets (NFULNL_CFG_F_SEQ)
	nextSeq uint32 // the sequence number expected next
}

// OpenNFLOG binds NFLOG group in the network namespace of the calling
// thread, asking for packet copies of up to Snaplen bytes, each packet sent
// at once (queue threshold 1; the kernel default batches for up to 1 s), and
// for sequence numbers (to count losses). Packets logged to the group queue
// up in the socket from then on; call Run to consume them. A group has one reader per network
// namespace: binding a group that another socket holds fails (EPERM/EBUSY).
// The binding ends when the NFLOG is closed (or the process exits).
//
// It does not send the per-family NFULNL_CFG_CMD_PF_BIND: nft `log group`
// reaches nfnetlink_log through its logger type whatever logger is bound to
// the family, and binding would replace the namespace's default logger for
// IPv4/IPv6 (what other netfilter users log through), which is not ours to
// change. A nil log discards messages.
func OpenNFLOG(group uint16, log *slog.Logger) (*NFLOG, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "nflog", "group", group)
	conn, err := netlink.Dial(netlinkNetfilter, nil)
	if err != nil {
		return nil, fmt.Errorf("open nfnetlink socket: %w", err)
	}
	if err := conn.SetReadBuffer(readBuffer); err != nil {
		log.Debug("cannot enlarge nflog socket buffer", "error", err)
	}
	return bindNFLOG(conn, group, log)
}

// bindNFLOG binds group on conn; it closes conn on error.
func bindNFLOG(conn *netlink.Conn, group uint16, log *slog.Logger) (*NFLOG, error) {
	r := &NFLOG{group: group, conn: conn, log: log, warn: newLimitedLog(log, 10*time.Second)}
	// Bind and configure in one request: the kernel creates the instance,
	// sets the copy mode, the queue threshold and the flags, then
	// acknowledges. A threshold of 1 sends every packet at once (the
	// kernel's default batches up to 100 packets or 1 s); the ACL's rate
	// limit keeps that cheap.
	attrs := []netlink.Attribute{cmdAttr(nfulnlCfgCmdBind), modeAttr(Snaplen), qthreshAttr(1), flagsAttr(nfulnlCfgFSeq)}
	if err := r.config(attrs); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("bind nflog group %d: %w", group, err)
	}
	r.seqOn = true
	log.Debug("nflog group bound", "snaplen", Snaplen)
	return r, nil
}

// config sends one NFULNL_MSG_CONFIG request and waits for its
// acknowledgement. Packet messages that arrive meanwhile (the group is live
// as soon as the kernel bound it) are kept for Run.
func (r *NFLOG) config(attrs []netlink.Attribute) error {
	req, err := configMsg(r.group, attrs)
	if err != nil {
		return err
	}
	req, err = r.conn.Send(req)
	if err != nil {
		return fmt.Errorf("send nflog config: %w", err)
	}
	// Bound the wait: the kernel answers at once.
	if err := r.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err == nil {
		defer func() { _ = r.conn.SetReadDeadline(time.Time{}) }()
	}
	for {
		msgs, err := r.conn.Receive()
		if err != nil {
			var oe *netlink.OpError
			if errors.As(err, &oe) && oe.Sequence == req.Header.Sequence {
				return fmt.Errorf("kernel refused nflog config: %w", err)
			}
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			return fmt.Errorf("receive nflog config acknowledgement: %w", err)
		}
		for _, m := range msgs {
			switch {
			case m.Header.Type == netlink.Error && m.Header.Sequence == req.Header.Sequence:
				return nil // acknowledgement (errors came back from Receive)
			case m.Header.Type == nflogType(nfulnlMsgPacket):
				r.mu.Lock()
				r.pending = append(r.pending, m)
				r.mu.Unlock()
			}
		}
	}
}

// Run reads logged packets and calls fn for each, in order, on the calling
// goroutine, until ctx is done (it returns ctx.Err()) or the NFLOG is closed
// (it returns nil). Messages or payloads that do not decode are logged
// (rate-limited) and skipped; socket buffer overruns (ENOBUFS) are counted
// (see Dropped) and reading goes on. Other receive errors end Run with an
// error. fn must not block for long: while it runs, packets queue in the
// socket and overflow it. Run starts no goroutine that outlives it.
func (r *NFLOG) Run(ctx context.Context, fn func(Packet)) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("nflog: Run already running")
	}
	defer r.running.Store(false)
	if r.closed.Load() {
		return nil
	}
	if err := r.conn.SetReadDeadline(time.Time{}); err != nil && !r.closed.Load() {
		return fmt.Errorf("nflog: clear read deadline: %w", err)
	}
	// A done ctx interrupts the blocking receive through the deadline.
	woke := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(woke)
		_ = r.conn.SetReadDeadline(time.Unix(1, 0))
	})
	defer func() {
		if !stop() {
			<-woke // the wake-up ran or is running: let it finish
		}
	}()

	r.mu.Lock()
	pending := r.pending
	r.pending = nil
	r.mu.Unlock()
	r.handle(pending, fn)

	for {
		msgs, err := r.conn.Receive()
		if err != nil {
			switch {
			case r.closed.Load():
				return nil
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, unix.ENOBUFS):
				// The kernel dropped messages; with sequence numbers
				// the next packet tells how many.
				r.overruns.Add(1)
				if !r.seqOn {
					r.dropped.Add(1)
				}
				r.warn.Warn("overrun", "nflog socket buffer overrun: packets lost")
				continue
			default:
				return fmt.Errorf("nflog: receive: %w", err)
			}
		}
		r.handle(msgs, fn)
	}
}

// handle decodes msgs and calls fn for each packet.
func (r *NFLOG) handle(msgs []netlink.Message, fn func(Packet)) {
	for _, m := range msgs {
		if m.Header.Type != nflogType(nfulnlMsgPacket) {
			continue // e.g. a late acknowledgement
		}
		msg, err := decodePacketMsg(m)
		if err != nil {
			r.warn.Warn("decode", "skipping undecodable nflog message", "error", err)
			continue
		}
		if msg.hasSeq {
			if gap := msg.seq - r.nextSeq; gap != 0 && gap < 1<<31 {
				r.dropped.Add(uint64(gap))
			}
			r.nextSeq = msg.seq + 1
		}
		p, err := ParsePayload(msg.payload)
		if err != nil {
			r.warn.Warn("payload", "skipping undecodable logged packet", "error", err, "hook", msg.hook, "ifindex", msg.inIf, "prefix", msg.prefix)
			continue
		}
		p.Time = msg.time
		if w, ok := strings.CutPrefix(msg.prefix, OutPrefix); ok {
			p.Out, p.Workload = true, w
		}
		if msg.hasUID {
			p.UID, p.HasUID = int(msg.uid), true
		}
		if p.Time.IsZero() {
			p.Time = time.Now()
		}
		fn(p)
	}
}

// Dropped returns how many logged packets never reached Run: gaps in the
// kernel's sequence numbers, which cover socket buffer overruns (ENOBUFS;
// after one, the kernel drops silently until the socket is drained). Losses
// after the last packet received show up with the next one.
func (r *NFLOG) Dropped() uint64 { return r.dropped.Load() }

// Close unbinds the group (the kernel drops the instance with the socket)
// and makes a running Run return nil. It does not wait for Run; calling it
// twice is harmless.
func (r *NFLOG) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	if err := r.conn.Close(); err != nil {
		return fmt.Errorf("close nflog socket: %w", err)
	}
	return nil
}
