// Command segmesh-forger is an end-to-end test tool: a gossip member with
// the cluster key that announces a node record for a WireGuard key it does
// not run a segmesh daemon for. It has two uses:
//
//   - Forgery (default): a genuine fresh WireGuard key announcing a forged
//     record, claiming overlay addresses its key does not yield (-address4,
//     -address6, e.g. another node's IPv4 with the earliest possible claim
//     time). Honest nodes must reject the record: never configure it as a
//     WireGuard peer and show it as "untrusted" with a reason.
//   - Announcing a foreign peer (-private-key-file): the key of a plain
//     WireGuard implementation (e.g. Debian's wireguard-go configured with
//     wg) is announced with a genuine record: the addresses its key yields
//     by the normal rules (IPv4 candidate 0, the IPv6 hash) claimed now,
//     unless -address4, -address6 or -claimed say otherwise. Segmesh nodes
//     then configure that implementation as an ordinary peer. Run it in the
//     peer's network namespace with -bind set to the peer's underlay
//     address: nodes take the WireGuard endpoint from the gossip address and
//     -listen-port.
//
// It writes its public key to -pubkey-file once gossip has started and runs
// until SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
)

type options struct {
	clusterKey string
	bind       string
	port       int
	join       string
	name       string
	address4   string
	address6   string
	network    string
	network6   string
	listenPort int
	claimed    int64
	claimedSet bool // -claimed given on the command line
	pubkeyFile string
	keyFile    string
	tags       string
}

func main() {
	var o options
	flag.StringVar(&o.clusterKey, "cluster-key", "", "cluster.key file (base64 keys, one per line)")
	flag.StringVar(&o.bind, "bind", "", "gossip bind and advertise address")
	flag.IntVar(&o.port, "port", 7946, "gossip port")
	flag.StringVar(&o.join, "join", "", "comma-separated seeds host:port")
	flag.StringVar(&o.name, "name", "forger", "human node name in the record")
	flag.StringVar(&o.address4, "address4", "", "claimed overlay IPv4 (default: the key's first genuine candidate)")
	flag.StringVar(&o.address6, "address6", "", "claimed overlay IPv6 (default: the key's genuine address)")
	flag.StringVar(&o.network, "network", "100.80.0.0/16", "overlay IPv4 network")
	flag.StringVar(&o.network6, "network6", "fd5e:6d00::/48", "overlay IPv6 network")
	flag.IntVar(&o.listenPort, "listen-port", 51820, "WireGuard port announced")
	flag.Int64Var(&o.claimed, "claimed", 1, "claim time of the IPv4 address (unix ns; default 1, or now with -private-key-file)")
	flag.StringVar(&o.pubkeyFile, "pubkey-file", "", "write the public key here once started")
	flag.StringVar(&o.keyFile, "private-key-file", "", "announce this WireGuard private key's record (mode 0600) instead of a fresh key's")
	flag.StringVar(&o.tags, "tags", "role=forger", "declared tags k=v,..")
	flag.Parse()
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "claimed" {
			o.claimedSet = true
		}
	})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := run(o, log); err != nil {
		log.Error("forger failed", "err", err)
		os.Exit(1)
	}
}

func run(o options, log *slog.Logger) error {
	if o.clusterKey == "" || o.bind == "" {
		return errors.New("-cluster-key and -bind are required")
	}
	keys, err := readClusterKeys(o.clusterKey)
	if err != nil {
		return err
	}
	bind, err := netip.ParseAddr(o.bind)
	if err != nil {
		return fmt.Errorf("-bind: %w", err)
	}
	network, err := netip.ParsePrefix(o.network)
	if err != nil {
		return fmt.Errorf("-network: %w", err)
	}
	network6, err := netip.ParsePrefix(o.network6)
	if err != nil {
		return fmt.Errorf("-network6: %w", err)
	}
	priv, err := loadOrGenerateKey(o.keyFile)
	if err != nil {
		return err
	}
	pub := priv.PublicKey()
	if o.keyFile != "" && !o.claimedSet {
		o.claimed = time.Now().UnixNano()
	}
	rec := gossip.Record{
		Format:     gossip.RecordFormat,
		Name:       o.name,
		PublicKey:  pub.String(),
		ListenPort: o.listenPort,
		Address4:   mesh.Candidate4(network, pub, 0),
		Claimed:    o.claimed,
		Address6:   mesh.Address6(network6, pub),
		Tags:       parseTags(o.tags),
	}
	if o.address4 != "" {
		if rec.Address4, err = netip.ParseAddr(o.address4); err != nil {
			return fmt.Errorf("-address4: %w", err)
		}
	}
	if o.address6 != "" {
		if rec.Address6, err = netip.ParseAddr(o.address6); err != nil {
			return fmt.Errorf("-address6: %w", err)
		}
	}
	var seeds []string
	if o.join != "" {
		seeds = strings.Split(o.join, ",")
	}
	cfg := gossip.Config{
		NodeName:      pub.String(),
		BindAddr:      bind.String(),
		BindPort:      o.port,
		AdvertiseAddr: bind.String(),
		AdvertisePort: o.port,
		Keys:          keys,
		Label:         "segmesh",
		Seeds:         seeds,
		Logger:        log,
	}
	g, err := gossip.New(cfg, rec)
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	g.Start()
	log.Info("forger announcing", "public_key", rec.PublicKey, "address4", rec.Address4,
		"address6", rec.Address6, "claimed", rec.Claimed, "seeds", seeds)
	if o.pubkeyFile != "" {
		if err := os.WriteFile(o.pubkeyFile, []byte(rec.PublicKey+"\n"), 0o644); err != nil {
			_ = g.Shutdown()
			return fmt.Errorf("write public key: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	log.Info("forger shutting down")
	if err := g.Shutdown(); err != nil {
		return fmt.Errorf("gossip shutdown: %w", err)
	}
	return nil
}

// loadOrGenerateKey reads the private key file, or returns a fresh key when
// path is empty.
func loadOrGenerateKey(path string) (mesh.Key, error) {
	if path == "" {
		return mesh.GenerateKey()
	}
	k, err := mesh.LoadPrivateKey(path)
	if err != nil {
		return mesh.Key{}, fmt.Errorf("-private-key-file: %w", err)
	}
	return k, nil
}

// readClusterKeys decodes the base64 keys of a cluster.key file.
func readClusterKeys(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cluster key: %w", err)
	}
	var keys [][]byte
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("cluster key %s: %w", path, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("cluster key %s: no keys", path)
	}
	return keys, nil
}

func parseTags(s string) map[string]string {
	tags := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k != "" {
			tags[k] = v
		}
	}
	return tags
}
