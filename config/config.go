// Package config loads and validates the segmesh daemon configuration: a YAML
// file read with viper, every key overridable by a SEGMESH_<KEY> environment
// variable (nested keys joined by "_", e.g. SEGMESH_GOSSIP_ADVERTISE), except
// workloads: a list of maps has no one-line form, so SEGMESH_WORKLOADS is an
// error rather than silently ignored.
//
// Every key of the contract is accepted; unknown keys are errors. Errors name
// the file and the key; the CLI exits 2 on them.
package config

import (
	"log/slog"
	"net/netip"
	"time"
)

// Default paths and values of the contract.
const (
	DefaultPath          = "/etc/segmesh/segmesh.yaml"
	DefaultControlSocket = "/run/segmesh/segmesh.sock"
	DefaultInterface     = "segmesh0"
	DefaultListenPort    = 51820
	DefaultPeerAPIPort   = 9477
	DefaultGossipPort    = 7946
	DefaultNetwork       = "100.80.0.0/16"
	DefaultNetwork6      = "fd5e:6d00::/48"
	DefaultStateDir      = "/var/lib/segmesh"
	DefaultKeyFile       = "/etc/segmesh/private.key"
	DefaultSecretFile    = "/etc/segmesh/cluster.key"
	DefaultMetricsListen = "127.0.0.1:9476"
	DefaultDeadPeerGrace = 2 * time.Minute
	// DefaultAddressRetention: how long every node remembers an IPv4
	// address's holder after it was last seen (security invariant 1).
	DefaultAddressRetention = 30 * 24 * time.Hour
	// WireGuardOverhead is subtracted from the underlay MTU for mtu: auto.
	WireGuardOverhead = 80
)

// Config is a validated configuration.
type Config struct {
	File string // the file it was read from

	Name           string
	Interface      string
	ListenPort     int
	MTU            int // 0 means auto
	PrivateKeyFile string
	Network        netip.Prefix
	Network6       netip.Prefix
	StateDir       string
	ControlSocket  string
	ControlGroup   string
	MetricsListen  string
	PeerAPIPort    int // 0: the peer API is off
	LogLevel       slog.Level
	LogFormat      string // text | json
	DeadPeerGrace  time.Duration
	// AddressRetention: an IPv4 holder absent this long loses its claim.
	AddressRetention time.Duration
	FlowLog          string
	FlowLogAllowed   bool // flow_log carries allowed flows too
	Gossip           Gossip
	Tags             map[string]string
	// Workloads: processes of this node with their own tags (at most 32).
	Workloads  []Workload
	PolicyFile string
	Trust      Trust
}

// Gossip is the gossip section.
type Gossip struct {
	Bind       string   // host[:port]; "" = advertise address, port 7946
	Advertise  string   // underlay IP peers dial; "" = detected at start
	Join       []string // host:port seeds
	SecretFile string
}

// Trust is the trust section. An empty CAFile means trust: open.
type Trust struct {
	CAFile   string
	CertFile string
	// OperatorKeysFile lists Ed25519 public keys that may sign quarantines
	// and releases, and nothing else (CA mode).
	OperatorKeysFile string
}

// TrustMode returns "open" or "ca".
func (c *Config) TrustMode() string {
	if c.Trust.CAFile == "" {
		return "open"
	}
	return "ca"
}
