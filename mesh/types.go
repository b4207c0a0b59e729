package mesh

import (
	"net/netip"
	"time"
)

// Config describes the local WireGuard interface.
type Config struct {
	Interface  string       // interface name, unique per host
	PrivateKey Key          // this node's key
	ListenPort int          // WireGuard UDP port
	MTU        int          // interface MTU
	Address4   netip.Prefix // overlay IPv4 with the mesh prefix length, e.g. 100.80.3.7/16
	Address6   netip.Prefix // overlay IPv6 with the mesh prefix length, e.g. fd5e:6d00::1/48
}

// Peer is the desired WireGuard configuration of one peer.
type Peer struct {
	PublicKey  Key
	Endpoint   netip.AddrPort // the address gossip reached the peer at, with its listen port
	AllowedIPs []netip.Prefix // its overlay addresses as /32 and /128
	// Keepalive is the PersistentKeepalive interval; 0 leaves the peer idle
	// until traffic needs it. Setting it starts a handshake at once, so the
	// daemon lets only one side of a new pair do that first: two
	// simultaneous initiations make both responses invalid and cost a
	// 5-15 s retry.
	Keepalive time.Duration
}

// PeerStats is what WireGuard reports about one configured peer.
type PeerStats struct {
	PublicKey     Key
	Endpoint      netip.AddrPort
	LastHandshake time.Time // zero when no handshake happened yet
	RxBytes       int64
	TxBytes       int64
}

// ReconcileResult counts what a Reconcile changed.
type ReconcileResult struct {
	Added, Removed, Updated int
}
