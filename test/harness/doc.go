// Package harness runs real segmesh binaries in Linux network namespaces for
// end-to-end tests and the demo.
//
// A Cluster owns one "underlay" namespace holding a bridge and one namespace
// per node, each joined to the bridge by a veth pair and addressed from
// 192.0.2.0/24 (TEST-NET-1, first node 192.0.2.10). Every name the cluster
// creates (namespaces, WireGuard interfaces) carries the cluster prefix, a
// random run id unless the caller fixes it, so parallel or leftover runs do
// not clash. WireGuard interface names are unique on the host because the
// UAPI sockets in /var/run/wireguard are shared by all namespaces.
//
// Helper programs (echo servers, dialers) run next to a node's daemon with
// Spawn; extra namespaces (e.g. a container behind a node) come from
// AddNamespace and are deleted with the cluster.
//
// Core functions return errors so the demo program can use them; TestCluster
// is a thin wrapper for tests that fails the test on error and cleans up
// everything (processes, namespaces, directories, sockets) when the test
// ends, dumping every node's log first when the test failed.
//
// The harness needs root (or CAP_NET_ADMIN/CAP_SYS_ADMIN) to create
// namespaces; see RequireNetns for how tests skip or fail without it.
package harness
