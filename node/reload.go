package node

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/segmesh/segmesh/config"
)

// Reload re-reads the config file (SIGHUP, `segmesh reload`). Tags and name
// are re-announced and cluster keys installed into the keyring. A changed
// workloads list is taken over: re-announced, its cgroups followed and
// enforced with the next sync. Keys that
// need a restart are reported in the log and keep their running value. When
// the new file is invalid, nothing changes and the error is returned.
func (n *Node) Reload() error {
	n.mu.Lock()
	file := n.cfg.File
	n.mu.Unlock()
	next, err := config.Load(file)
	if err != nil {
		n.log.Error("reload failed; keeping the running configuration", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	keys, err := config.ReadClusterKeys(next.Gossip.SecretFile)
	if err != nil {
		return fmt.Errorf("reload: gossip.secret_file: %w", err)
	}
	if err := n.gossip.SetKeys(keys); err != nil {
		return fmt.Errorf("reload: install cluster keys: %w", err)
	}

	nextTrust, err := n.reloadTrust(next)
	if err != nil {
		n.log.Error("reload failed; keeping the running configuration", "err", err)
		return fmt.Errorf("reload: %w", err)
	}

	n.mu.Lock()
	cur := n.cfg
	for _, k := range restartOnly(cur, next) {
		n.log.Warn("reload: this key needs a restart; keeping the running value", "key", k)
	}
	merged := *cur
	merged.Name, merged.Tags, merged.PolicyFile = next.Name, next.Tags, next.PolicyFile
	merged.DeadPeerGrace, merged.Gossip.Join = next.DeadPeerGrace, next.Gossip.Join
	merged.Workloads = next.Workloads
	merged.FlowLogAllowed = next.FlowLogAllowed
	n.cfg = &merged
	workloadsChanged := !workloadsEqual(cur.Workloads, next.Workloads)
	certChanged := false
	if nextTrust != nil {
		certChanged = !bytes.Equal(mustMarshal(nextTrust.cert), mustMarshal(n.trust.cert))
		n.trust = nextTrust
		n.adoptCertIdentity()
	}
	changed := n.cfg.Name != cur.Name || !maps.Equal(n.cfg.Tags, cur.Tags) || certChanged || workloadsChanged
	rec := n.record()
	n.mu.Unlock()

	if workloadsChanged {
		n.log.Info("reload: workloads changed", "workloads", workloadNames(next.Workloads),
			"before", workloadNames(cur.Workloads))
		if err := n.followCgroups(next.Workloads, file); err != nil {
			n.log.Error("reload: cannot follow the workloads' cgroups", "err", err)
			return fmt.Errorf("reload: %w", err)
		}
	}
	if changed {
		if err := n.gossip.UpdateLocal(rec); err != nil {
			return fmt.Errorf("reload: re-announce: %w", err)
		}
		n.log.Info("reload: re-announced", "name", rec.Name, "tags", rec.Tags)
	}
	n.log.Info("configuration reloaded", "file", file)
	if err := n.proposePolicyFile(next.PolicyFile, true); err != nil {
		n.log.Error("reload: policy_file not applied", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	if err := n.flows.reopen(); err != nil {
		n.log.Error("reload: cannot reopen flow_log", "err", err)
	}
	n.kick()
	return nil
}

// workloadsEqual reports whether two workload lists are the same, in order.
func workloadsEqual(a, b []config.Workload) bool {
	return slices.EqualFunc(a, b, func(x, y config.Workload) bool {
		return x.Name == y.Name && x.Unit == y.Unit && x.Cgroup == y.Cgroup && maps.Equal(x.Tags, y.Tags)
	})
}

// workloadNames lists workloads as name=unit-or-cgroup for the log.
func workloadNames(ws []config.Workload) []string {
	out := make([]string, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.Name+"="+w.Target())
	}
	return out
}

// restartOnly lists the keys that differ and cannot change on a live node.
func restartOnly(a, b *config.Config) []string {
	var out []string
	add := func(key string, differ bool) {
		if differ {
			out = append(out, key)
		}
	}
	add("interface", a.Interface != b.Interface)
	add("listen_port", a.ListenPort != b.ListenPort)
	add("mtu", a.MTU != b.MTU)
	add("private_key_file", a.PrivateKeyFile != b.PrivateKeyFile)
	add("network", a.Network != b.Network)
	add("network6", a.Network6 != b.Network6)
	add("state_dir", a.StateDir != b.StateDir)
	add("control_socket", a.ControlSocket != b.ControlSocket)
	add("gossip.bind", a.Gossip.Bind != b.Gossip.Bind)
	add("gossip.advertise", a.Gossip.Advertise != b.Gossip.Advertise)
	add("trust.operator_keys_file", a.Trust.OperatorKeysFile != b.Trust.OperatorKeysFile)
	add("peer_api_port", a.PeerAPIPort != b.PeerAPIPort)
	add("log_format", a.LogFormat != b.LogFormat)
	add("log_level", a.LogLevel != b.LogLevel)
	return out
}

// reloadTrust re-reads the CA keys and this node's certificate (renewal,
// CA rotation). The revocation list is rebuilt against the new CA keys. A
// certificate that is not valid for this key keeps the running trust.
func (n *Node) reloadTrust(next *config.Config) (*trustState, error) {
	n.mu.Lock()
	cur := n.trust
	n.mu.Unlock()
	if (cur == nil) != (next.Trust.CAFile == "") {
		return nil, fmt.Errorf("trust mode cannot change on a running node (restart to switch between open and CA mode)")
	}
	if cur == nil {
		return nil, nil
	}
	t, err := loadTrust(next, n.pub, n.deps.Now())
	if err != nil {
		return nil, err
	}
	if _, err := t.revs.AddAll(cur.revs.Entries()); err != nil {
		n.log.Warn("reload: revocations of CA keys no longer trusted dropped", "err", err)
	}
	return t, nil
}

func mustMarshal(c interface{ Marshal() ([]byte, error) }) []byte {
	b, _ := c.Marshal()
	return b
}
