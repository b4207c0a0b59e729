package acl

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
)

// TableName is the one nftables table the daemon owns, in the inet family
// (`table inet segmesh`). No other table is ever written.
const TableName = "segmesh"

// LogGroup is the NFLOG group that receives the denied (enforce mode) or
// audited (audit mode) packets of the mesh interface: the third rule from
// the end of chain mesh_in logs them with `log group 8476 snaplen 128`,
// rate-limited to LogRate packets per second for the whole node (burst
// LogRate) so a flood cannot drown the reader; the next two count every one
// of them per source (see DeniedBySource) and the last rule counts every one
// of them (see Counters) and drops or accepts it. Every such packet is a candidate, not
// only the first of a flow (original-direction packets are checked each
// time), so a reader aggregates flows. A flow log reader subscribes to this
// group (nfnetlink_log). Packets dropped because they are not addressed to
// this node (only-to-me) are neither logged nor counted there.
const LogGroup uint16 = 8476

// LogRate is the packets-per-second limit of the NFLOG rule (see LogGroup).
const LogRate = 100

// LogSnaplen is how many bytes of each logged packet are copied to NFLOG:
// enough for the IPv6 header and a TCP header with options.
const LogSnaplen = 128

// Config is the nftables backend's view of the node.
type Config struct {
	Interface string       // mesh interface name
	Network4  netip.Prefix // overlay networks (for the underlay guard)
	Network6  netip.Prefix
}

func (c Config) validate() error {
	if c.Interface == "" || len(c.Interface) > 15 {
		return fmt.Errorf("interface name %q: must be 1 to 15 bytes", c.Interface)
	}
	if !c.Network4.IsValid() || !c.Network4.Addr().Is4() {
		return fmt.Errorf("network4 %v: not an IPv4 prefix", c.Network4)
	}
	if !c.Network6.IsValid() || !c.Network6.Addr().Is6() || c.Network6.Addr().Is4In6() {
		return fmt.Errorf("network6 %v: not an IPv6 prefix", c.Network6)
	}
	return nil
}

// Firewall is the nftables enforcement of one node: it owns `table inet
// segmesh` (see DESIGN.md "nftables") and keeps its set elements equal to the
// last Desired state by atomic diffs. Its methods are safe for concurrent use.
//
// Order of use: NewFirewall, Install (before the mesh interface is up and
// before any WireGuard peer is configured), Apply on every change, Remove on
// graceful shutdown (not on a crash or a restart that should stay filtered),
// Close.
type Firewall struct {
	cfg   Config
	log   *slog.Logger
	conn  *nftables.Conn // Install, dumps, Remove
	bconn batchConn      // Apply's batches (see elemBatch)

	mu        sync.Mutex
	installed bool
	lay       *layout // names of the installed objects; final rule handle
	// known is true when cur and audit reflect the kernel. It is false after
	// Install kept an existing table and after a failed Apply, so the next
	// Apply reads the kernel's elements first.
	known bool
	cur   *elementSet // what the kernel holds (when known)
	spare *elementSet // buffers reused for the next desired state
	build elemBuilder
	batch elemBatch // reused by every Apply
	memo  portMemo  // the d.Ports behind cur (see portMemo); forgotten whenever known is false
	audit bool
	last  batchStats // what the last successful Apply sent (tests, logs)
	// lastFlush is how long the last Apply's batch took to send and
	// commit (netlink encoding and the kernel's work).
	lastFlush time.Duration
}

// batchStats describes one Apply batch.
type batchStats struct {
	Adds, Dels   int  // set elements added / deleted
	ModeSwitched bool // the final rule was replaced
}

// ErrNotInstalled is returned by Apply, Counters and DeniedBySource before
// Install.
var ErrNotInstalled = errors.New("nftables table not installed")

// NewFirewall validates cfg and opens two lasting netlink connections of
// the nftables family: one for Install, Remove and reading, one for Apply's
// batches (see elemBatch). opts are passed to nftables.New (e.g.
// nftables.WithNetNSFd to work in another network namespace, or
// nftables.WithTestDial in tests). It does not touch the ruleset.
func NewFirewall(cfg Config, log *slog.Logger, opts ...nftables.ConnOption) (*Firewall, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("nftables config: %w", err)
	}
	cfg.Network4 = cfg.Network4.Masked()
	cfg.Network6 = cfg.Network6.Masked()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := nftables.New(append([]nftables.ConnOption{nftables.AsLasting()}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink connection: %w", err)
	}
	f := &Firewall{cfg: cfg, log: log.With("component", "nftables"), conn: conn,
		bconn: batchConn{netns: conn.NetNS, testDial: conn.TestDial}}
	if err := f.bconn.dial(); err != nil {
		_ = conn.CloseLasting()
		return nil, fmt.Errorf("open nftables batch connection: %w", err)
	}
	return f, nil
}

// Counters returns the packets and bytes counted by the final rule of chain
// mesh_in: mesh-interface packets that no rule allowed (dropped in enforce
// mode, accepted in audit mode). The count lives in a named counter object
// (`counter final`), so it survives mode switches and daemon restarts that
// keep the table.
func (f *Firewall) Counters() (packets, bytes uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return 0, 0, ErrNotInstalled
	}
	obj, err := f.conn.GetObject(&nftables.CounterObj{Table: f.lay.table, Name: counterFinal})
	if err != nil {
		return 0, 0, fmt.Errorf("read counter %q: %w", counterFinal, err)
	}
	c, ok := obj.(*nftables.CounterObj)
	if !ok {
		return 0, 0, fmt.Errorf("read counter %q: unexpected object %T", counterFinal, obj)
	}
	return c.Packets, c.Bytes, nil
}

// Count is a packet and byte count.
type Count struct{ Packets, Bytes uint64 }

// DeniedBySource returns, per source address, the packets and bytes counted
// by the final rule of chain mesh_in (see Counters): denied in enforce mode,
// audited in audit mode — the sets do not tell the two apart, so a caller
// that labels them by mode attributes the growth between two reads to the
// mode of that time. The kernel keeps them in the dynamic sets seen4 and
// seen6 (`update @seen4 { ip saddr counter }` just before the final rule).
// A source is forgotten SeenTimeout after its last such packet, and counts
// from zero if it comes back; a source that arrives while a set holds 65535
// sources is not counted per source (the final counter still counts it).
// The counts survive mode switches and restarts that keep the table.
// IPv4 sources are returned as 4-byte addresses.
func (f *Firewall) DeniedBySource() (map[netip.Addr]Count, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return nil, ErrNotInstalled
	}
	out := make(map[netip.Addr]Count)
	for _, name := range seenSetNames {
		elems, err := f.conn.GetSetElements(f.lay.sets[name])
		if err != nil {
			return nil, fmt.Errorf("list elements of set %s: %w", name, err)
		}
		for _, e := range elems {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				return nil, fmt.Errorf("set %s: element key of %d bytes", name, len(e.Key))
			}
			var c Count
			if e.Counter != nil {
				c = Count{Packets: e.Counter.Packets, Bytes: e.Counter.Bytes}
			}
			out[a] = c
		}
	}
	return out, nil
}

// Remove deletes table inet segmesh (graceful shutdown): mesh traffic is no
// longer filtered afterwards, so the daemon removes the mesh interface (or
// its peers) first. Removing a table that is not there is not an error.
func (f *Firewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.installed, f.known, f.cur = false, false, new(elementSet)
	f.memo.forget()
	exists, err := f.tableExists()
	if err != nil {
		return err
	}
	if !exists {
		return nil
	}
	f.conn.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: TableName})
	if err := f.conn.Flush(); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete table inet %s: %w", TableName, err)
	}
	f.log.Info("nftables table removed", "table", "inet "+TableName)
	return nil
}

// Close releases the netlink connections. The ruleset is left as it is.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	if err := f.conn.CloseLasting(); err != nil {
		errs = append(errs, fmt.Errorf("close nftables netlink connection: %w", err))
	}
	if err := f.bconn.close(); err != nil {
		errs = append(errs, fmt.Errorf("close nftables batch connection: %w", err))
	}
	return errors.Join(errs...)
}

// tableExists reports whether table inet segmesh exists.
func (f *Firewall) tableExists() (bool, error) {
	tables, err := f.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list inet tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}
