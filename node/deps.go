package node

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/acl/nft"
	"github.com/segmesh/segmesh/cgroup"
	"github.com/segmesh/segmesh/flows"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
	"github.com/segmesh/segmesh/peerapi"
)

// Mesh is the WireGuard device as the node uses it (*mesh.Mesh).
type Mesh interface {
	Up() error
	Backend() string
	Name() string
	SetAddress4(netip.Prefix) error
	// ReconcileStats brings WireGuard's peers to the list by diff and
	// returns the peers' statistics from the same device read (see
	// mesh.Mesh.ReconcileStats).
	ReconcileStats([]mesh.Peer) (mesh.ReconcileResult, []mesh.PeerStats, error)
	// Stats reads the device for status and metrics.
	Stats() ([]mesh.PeerStats, error)
	// PathMTU is the underlay MTU towards dst, overhead not subtracted.
	PathMTU(dst netip.Addr) (int, error)
	// SetMTU sets the interface MTU (mtu auto retunes it, see mtu.go).
	SetMTU(mtu int) error
	Close() error
}

// Gossip is membership as the node uses it (*gossip.Gossip).
type Gossip interface {
	Start()
	Members() []gossip.Member
	Forget(name string)
	Changes() <-chan struct{}
	UpdateLocal(gossip.Record) error
	SetKeys([][]byte) error
	NumMembers() int
	Publish(kind string, data []byte) error
	// PublishUrgent also sends the document to every member directly.
	PublishUrgent(kind string, data []byte) error
	Leave(time.Duration) error
	Shutdown() error
}

// Firewall is the nftables enforcement as the node uses it (*nft.Firewall).
type Firewall interface {
	Install() error
	Apply(acl.Enforced) error
	// ApplyEgress enforces the sender side (after Apply, see
	// nft.Firewall.ApplyEgress).
	ApplyEgress(nft.Egress) error
	// EgressDenied returns the egress denials per local identity and
	// destination (see nft.Firewall.EgressDenied).
	EgressDenied() (map[string]map[netip.Addr]nft.Count, error)
	// Observed reads the kernel's counts of allowed traffic into this node
	// (see nft.Firewall.Observed).
	Observed() ([]nft.Observation, error)
	// ApplyQuarantine writes the quarantine sets (see nft.Quarantine);
	// QuarantineDropped counts what they dropped.
	ApplyQuarantine(nft.Quarantine) error
	QuarantineDropped() (uint64, error)
	Counters() (packets, bytes uint64, err error)
	DeniedBySource() (map[netip.Addr]nft.Count, error)
	Remove() error
	Close() error
}

// FlowReader delivers the packets logged by the ACL chain (*flows.NFLOG).
type FlowReader interface {
	Run(ctx context.Context, fn func(flows.Packet)) error
	Close() error
}

// Deps are the OS edges of a node; tests replace them with fakes.
type Deps struct {
	OpenMesh        func(mesh.Config, *slog.Logger) (Mesh, error)
	NewGossip       func(gossip.Config, gossip.Record) (Gossip, error)
	NewFirewall     func(nft.Config, *slog.Logger) (Firewall, error)
	DeleteConntrack func([]netip.Addr) (int, error)
	OpenFlowReader  func(group uint16, log *slog.Logger) (FlowReader, error)
	AutoMTU         func(netip.Addr) (int, error)
	// OpenCgroups follows the declared workloads' cgroups (cgroup.Watcher;
	// cgrouptest.Fake in tests). Nil: workloads cannot be placed.
	OpenCgroups func([]cgroup.Workload, *slog.Logger) (cgroup.Source, error)
	// ServePeerAPI makes the peer API server (peerapi.New). Nil: the peer
	// API stays off whatever peer_api_port says.
	ServePeerAPI func(peerapi.Config, peerapi.Source) PeerAPIServer
	Now          func() time.Time
}

// PeerAPIServer is the peer API as the node uses it (*peerapi.Server).
type PeerAPIServer interface {
	// SetAddrs listens on exactly these overlay addresses.
	SetAddrs([]netip.Addr) error
	Close() error
}

// RealDeps returns the production edges.
func RealDeps() Deps {
	return Deps{
		OpenMesh: func(c mesh.Config, l *slog.Logger) (Mesh, error) {
			m, err := mesh.Open(c, l)
			if err != nil {
				return nil, err
			}
			return m, nil
		},
		NewGossip: func(c gossip.Config, r gossip.Record) (Gossip, error) {
			g, err := gossip.New(c, r)
			if err != nil {
				return nil, err
			}
			return g, nil
		},
		NewFirewall: func(c nft.Config, l *slog.Logger) (Firewall, error) {
			f, err := nft.NewFirewall(c, l)
			if err != nil {
				return nil, err
			}
			return f, nil
		},
		DeleteConntrack: nft.DeleteConntrack,
		OpenFlowReader: func(group uint16, log *slog.Logger) (FlowReader, error) {
			r, err := flows.OpenNFLOG(group, log)
			if err != nil {
				return nil, err
			}
			return r, nil
		},
		AutoMTU:     mesh.AutoMTU,
		OpenCgroups: openCgroupSource,
		ServePeerAPI: func(c peerapi.Config, s peerapi.Source) PeerAPIServer {
			return peerapi.New(c, s)
		},
		Now: time.Now,
	}
}
