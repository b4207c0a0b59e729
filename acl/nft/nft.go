// Package nft is the kernel backend of the segment policy: it owns table
// `inet segmesh` and keeps it equal to the compiler's output (acl.Enforced:
// identities, their ports, and source address → identity) by one atomic
// netlink batch per change. It imports acl for that output only; acl never
// imports it.
package nft

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/google/nftables"
)

// TableName is the one nftables table the daemon owns, in the inet family
// (`table inet segmesh`). No other table is ever written.
const TableName = "segmesh"

// LogGroup is the NFLOG group that receives the denied (enforce mode) or
// audited (audit mode) packets of the mesh interface: the rules at the end
// of chain mesh_in log them with `log group 8476 snaplen 128`, rate-limited
// to LogRate packets per second for the whole node (burst LogRate), count
// them per source (see DeniedBySource) and in total (see Counters), and
// drop or accept them. Packets dropped because they are not addressed to
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

// Firewall is the nftables enforcement of one node. Its methods are safe
// for concurrent use.
//
// Order of use: NewFirewall, Install (before the mesh interface is up and
// before any WireGuard peer is configured), Apply on every change, Remove on
// graceful shutdown (not on a crash or a restart that should stay filtered),
// Close.
type Firewall struct {
	cfg  Config
	log  *slog.Logger
	conn *nftables.Conn

	mu        sync.Mutex
	installed bool
	lay       *layout
	// legacy is set when Install found the previous release's table: it
	// keeps enforcing until the first Apply replaces it in one batch.
	legacy bool
	// known is true when cur reflects the kernel. It is false after Install
	// kept an existing table and after a failed Apply, so the next Apply
	// reads the kernel first.
	known bool
	cur   state
	last  batchStats // what the last successful Apply sent (tests, logs)
	// eknown is true when ecur reflects the egress part of the kernel's
	// table (see ApplyEgress).
	eknown bool
	ecur   egressState
}

// batchStats describes one Apply batch.
type batchStats struct {
	SourceAdds, SourceDels [2]int // map elements per family (0: IPv4)
	IdentitiesNew          int    // identity chains created
	IdentitiesRewritten    int    // identity chains whose sets and rules were rewritten
	IdentitiesDeleted      int
	PortElements           int  // per-identity set elements written
	Local                  int  // local4/local6 elements added or deleted
	DispatchRewritten      bool // chains src4 and src6 rewritten (identities came or went)
	ModeSwitched           bool
	Converted              bool // the previous release's table was replaced
}

// ErrNotInstalled is returned by Apply, Counters and DeniedBySource before
// Install.
var ErrNotInstalled = errors.New("nftables table not installed")

// NewFirewall validates cfg and opens a lasting netlink connection of the
// nftables family. opts are passed to nftables.New (e.g.
// nftables.WithNetNSFd, or nftables.WithTestDial in tests). It does not
// touch the ruleset.
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
	return &Firewall{cfg: cfg, log: log.With("component", "nftables"), conn: conn}, nil
}

// Counters returns the packets and bytes counted by the final rule of chain
// mesh_in: mesh-interface packets that no rule allowed (dropped in enforce
// mode, accepted in audit mode). The count lives in a named counter object
// (`counter final`), so it survives mode switches and restarts that keep the
// table.
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
// audited in audit mode. The kernel keeps them in the dynamic sets seen4 and
// seen6 (`update @seen4 { ip saddr counter }` just before the final rule).
// A source is forgotten SeenTimeout after its last such packet; a source
// that arrives while a set holds 65535 sources is not counted per source
// (the final counter still counts it). IPv4 sources are 4-byte addresses.
func (f *Firewall) DeniedBySource() (map[netip.Addr]Count, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return nil, ErrNotInstalled
	}
	out := make(map[netip.Addr]Count)
	for _, name := range []string{setSeen4, setSeen6} {
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

// Remove deletes table inet segmesh (graceful shutdown). Removing a table
// that is not there is not an error.
func (f *Firewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.installed, f.known, f.legacy, f.cur = false, false, false, state{}
	f.eknown, f.ecur = false, egressState{}
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

// Close releases the netlink connection. The ruleset is left as it is.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.conn.CloseLasting(); err != nil {
		return fmt.Errorf("close nftables netlink connection: %w", err)
	}
	return nil
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
