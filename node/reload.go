package node

import (
	"fmt"
	"maps"

	"github.com/segmesh/segmesh/config"
)

// Reload re-reads the config file (SIGHUP, `segmesh reload`). Tags and name
// are re-announced and cluster keys installed into the keyring. Keys that
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

	n.mu.Lock()
	cur := n.cfg
	for _, k := range restartOnly(cur, next) {
		n.log.Warn("reload: this key needs a restart; keeping the running value", "key", k)
	}
	merged := *cur
	merged.Name, merged.Tags, merged.PolicyFile = next.Name, next.Tags, next.PolicyFile
	merged.DeadPeerGrace, merged.Gossip.Join = next.DeadPeerGrace, next.Gossip.Join
	changed := merged.Name != cur.Name || !maps.Equal(merged.Tags, cur.Tags)
	n.cfg = &merged
	rec := n.record()
	n.mu.Unlock()

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
	add("log_format", a.LogFormat != b.LogFormat)
	add("log_level", a.LogLevel != b.LogLevel)
	return out
}
