// Package peerapi is the read-only HTTP API each node serves to its peers
// on its own overlay addresses (DESIGN.md "Observed flows, the peer API and
// the fleet view"), and the client that asks every peer in parallel.
//
// The server binds each socket to an overlay address and to the mesh
// interface (SO_BINDTODEVICE), so nothing arriving on another interface
// (the underlay, loopback: a process on the node itself) reaches it. The
// policy governs who may connect, like any port; on top of that every
// accepted connection whose source is not an admitted peer is closed
// before a byte is read. Endpoints: GET /v1/flows, /v1/observed, /v1/info.
package peerapi
