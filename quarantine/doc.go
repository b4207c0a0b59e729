// Package quarantine holds the fleet's quarantine entries (DESIGN.md
// "Quarantine: respond to an incident"): one versioned entry per node —
// quarantined, with the segments allowed to reach it for forensics, or
// released — spread through gossip, persisted, and merged newer-only, so
// every node ends with the same list whatever order entries arrive in.
//
// In CA mode an entry counts only when signed by a CA key or an operator
// key (Sign, Verify); in open mode entries are unsigned.
package quarantine
