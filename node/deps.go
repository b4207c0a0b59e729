package node

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

// Mesh is the WireGuard device as the node uses it (*mesh.Mesh).
type Mesh interface {
	Up() error
	Backend() string
	Name() string
	SetAddress4(netip.Prefix) error
	Reconcile([]mesh.Peer) (mesh.ReconcileResult, error)
	Stats() ([]mesh.PeerStats, error)
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
	Leave(time.Duration) error
	Shutdown() error
}

// Deps are the OS edges of a node; tests replace them with fakes.
type Deps struct {
	OpenMesh  func(mesh.Config, *slog.Logger) (Mesh, error)
	NewGossip func(gossip.Config, gossip.Record) (Gossip, error)
	AutoMTU   func(netip.Addr) (int, error)
	Now       func() time.Time
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
		AutoMTU: mesh.AutoMTU,
		Now:     time.Now,
	}
}
