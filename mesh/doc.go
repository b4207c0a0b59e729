// Package mesh owns the local WireGuard interface of a segmesh node: the
// device itself (the kernel's through netlink when available, else
// wireguard-go embedded in this process on a TUN with its UAPI socket), the
// node's keys and overlay addresses, the routes for the overlay prefixes,
// and the peer list, which Reconcile changes by diff so that sessions and
// counters of unchanged peers survive. It knows nothing about tags or
// policy.
//
// The OS edges sit behind narrow interfaces: WGClient (wgctrl; fake in
// package meshtest) and an internal rtnetlink interface, so everything but
// the kernel itself is unit tested without root. The root tests run the
// real device in network namespaces they create.
package mesh
