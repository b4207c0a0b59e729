package gossip

import (
	"net/netip"
	"time"
)

// State is a member's liveness as this node sees it.
type State int

// Member states.
const (
	StateAlive   State = iota // answering probes
	StateSuspect              // a probe failed; may still refute and become alive
	StateDead                 // declared failed by the failure detector
	StateLeft                 // left gracefully (Leave)
)

// String returns "alive", "suspect", "dead" or "left".
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "unknown"
}

// Member is one known node other than this one.
type Member struct {
	Name       string         // memberlist node name
	Addr       netip.AddrPort // gossip address the node was reached at (its advertise address)
	Meta       []byte         // its record bytes: the full record, or a stub (Record.Ext set) until the full one arrived
	State      State
	StateSince time.Time // when it entered State (local clock)
}

// DocumentHandler owns the documents (opaque versioned state, e.g. the
// policy) that gossip carries for the daemon.
type DocumentHandler interface {
	// MergeDocument is offered every document received (broadcast, direct
	// send, push/pull). It returns true when the document was new and
	// accepted (gossip then re-broadcasts small ones and forwards large ones
	// learned through push/pull). Called from memberlist goroutines: must not
	// block long and must not call back into Gossip methods that wait for
	// the network (Leave, UpdateLocal). data is the handler's to keep.
	MergeDocument(kind string, data []byte) bool
	// Documents returns the documents to include in push/pull state
	// exchange (kind -> data).
	Documents() map[string][]byte
}
