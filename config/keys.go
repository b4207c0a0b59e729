package config

// keySpec documents one configuration key.
type keySpec struct {
	Key     string
	Default any
	Doc     string
}

// Keys lists every configuration key of the contract with its default and a
// one-line description. It is the single source for defaults, for unknown-key
// detection and for the commented file `segmesh init` writes.
var Keys = []keySpec{
	{"name", "", "human name of this node; default: hostname (may repeat across nodes)"},
	{"interface", DefaultInterface, "WireGuard interface name, unique per host"},
	{"listen_port", DefaultListenPort, "WireGuard UDP port"},
	{"mtu", "auto", "interface MTU: auto (lowest underlay path MTU to the peers minus 80, followed at run time) or a number 1280-65535 (never changed)"},
	{"private_key_file", DefaultKeyFile, "WireGuard private key, mode 0600"},
	{"network", DefaultNetwork, "overlay IPv4 network"},
	{"network6", DefaultNetwork6, "overlay IPv6 network (ULA)"},
	{"state_dir", DefaultStateDir, "persisted address claim, peer cache, policy, revocations"},
	{"control_socket", DefaultControlSocket, "unix socket of the control API (mode 0600)"},
	{"control_group", "", "group given read-only access to the control socket; members get the read-only endpoints"},
	{"metrics_listen", DefaultMetricsListen, "Prometheus /metrics, /healthz, /readyz; \"\" disables"},
	{"peer_api_port", DefaultPeerAPIPort, "TCP port of the read-only peer API on the overlay addresses (flows, observed, info for --fleet); the policy governs who reaches it; 0 disables"},
	{"log_level", "info", "debug | info | warn | error"},
	{"log_format", "text", "text | json"},
	{"dead_peer_grace", DefaultDeadPeerGrace, "a peer declared dead keeps its access this long (leave/revoke: at once)"},
	{"address_retention", "30d", "every node remembers the holder of an overlay IPv4 this long after it was last seen; nobody else may take it meanwhile (segmesh node remove frees it)"},
	{"flow_log", "", "path for denied/audited flows as JSON lines, reopened on SIGHUP/reload"},
	{"flow_log_allowed", false, "also write allowed flows to flow_log, one line per aggregate update"},
	{"gossip.bind", "", "gossip bind address[:port]; default: advertise address, port 7946"},
	{"gossip.advertise", "", "underlay address peers dial; default: detected"},
	{"gossip.join", []string{}, "seeds host:port; the persisted peer cache is tried too"},
	{"gossip.secret_file", DefaultSecretFile, "base64 32-byte cluster keys, one per line, first = primary"},
	{"tags", map[string]string{}, "workload tags, e.g. role: db (keys are case-insensitive, stored lower-case)"},
	{"workloads", []any{}, "processes of this node with their own tags, at most 32: name [a-z0-9-]{1,32} (unique), exactly one of unit (systemd unit) or cgroup (cgroup v2 path), tags added to the node's (no node tag key); file only, no SEGMESH_WORKLOADS"},
	{"policy_file", "", "optional policy proposed at start and on reload when it changed (CA mode: signed, see policy sign)"},
	{"trust.ca_file", "", "mesh CA public key(s), one per line; empty = trust: open"},
	{"trust.cert_file", "", "this node's certificate (CA mode)"},
	{"trust.operator_keys_file", "", "CA mode: Ed25519 public keys (segmesh ca operator-key), one per line, that may sign quarantines and releases and nothing else"},
}
