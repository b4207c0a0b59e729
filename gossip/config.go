package gossip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures a Gossip instance. Zero timing fields take memberlist's
// LAN profile defaults (or the defaults named on the field); tests shorten them.
type Config struct {
	NodeName      string          // memberlist node name (the daemon passes the base64 WireGuard public key); required
	BindAddr      string          // IP to bind gossip to; required, never the unspecified address
	BindPort      int             // 0 picks a free port (tests); see Gossip.Addr
	AdvertiseAddr string          // address peers dial; default BindAddr
	AdvertisePort int             // default: the bound port
	Keys          [][]byte        // keyring (16, 24 or 32 bytes each); first is primary; required
	Label         string          // memberlist label, authenticated on every packet and stream; required
	Seeds         []string        // host:port seeds
	CachePath     string          // persisted peer cache file; "" disables
	Documents     DocumentHandler // optional: documents (e.g. the policy) carried for the daemon
	Logger        *slog.Logger    // default: slog.Default()

	// memberlist timing (defaults: memberlist.DefaultLANConfig).
	ProbeInterval       time.Duration // failure detection probe period (1s)
	ProbeTimeout        time.Duration // direct probe ack timeout (500ms)
	GossipInterval      time.Duration // gossip period (200ms)
	PushPullInterval    time.Duration // full state exchange period (30s)
	TCPTimeout          time.Duration // stream dial/read timeout (10s)
	SuspicionMult       int           // suspicion timeout multiplier (4)
	RetransmitMult      int           // broadcast retransmit multiplier (4)
	GossipToTheDeadTime time.Duration // keep gossiping to dead nodes this long (30s)
	DeadNodeReclaimTime time.Duration // a dead node may come back on another address after this (30s)

	// Compress turns on memberlist's LZW compression of the packets and
	// streams this node sends. Off by default, unlike memberlist's LAN
	// profile: compressing before encrypting lets an observer learn about
	// the plaintext from the ciphertext's length (the CRIME class of leaks),
	// and memberlist allocates and clears a fresh 64 KiB LZW table per
	// packet, some 15 MB of garbage per join burst with 200 peers, which
	// held the daemon's resident memory about 8 MB higher (BENCHMARKS.md
	// row 8a). Gossip packs the same messages into a packet either way (by
	// their uncompressed size), so spread is unchanged; idle bandwidth is
	// row 6c's, measured uncompressed. Receivers accept compressed and plain
	// messages either way, so nodes with and without it mix.
	Compress bool

	// segmesh timing.
	RejoinInterval     time.Duration // retry seeds/cache of nodes not alive (30s)
	JoinBackoffMin     time.Duration // first retry delay while not joined (1s)
	JoinBackoffMax     time.Duration // retry delay cap while not joined (30s)
	CacheWriteInterval time.Duration // at most one peer cache write per interval (2s)
	WatchInterval      time.Duration // housekeeping period (500ms)
}

// Default segmesh timings.
const (
	DefaultRejoinInterval      = 30 * time.Second
	DefaultJoinBackoffMin      = time.Second
	DefaultJoinBackoffMax      = 30 * time.Second
	DefaultCacheWriteInterval  = 2 * time.Second
	DefaultWatchInterval       = 500 * time.Millisecond
	DefaultDeadNodeReclaimTime = 30 * time.Second
)

// normalize validates c and fills defaults.
func (c Config) normalize() (Config, error) {
	if c.NodeName == "" {
		return c, errors.New("gossip config: node name is required")
	}
	if c.BindAddr == "" {
		return c, errors.New("gossip config: bind address is required")
	}
	bind, err := netip.ParseAddr(c.BindAddr)
	if err != nil {
		return c, fmt.Errorf("gossip config: bind address %q: %w", c.BindAddr, err)
	}
	if bind.IsUnspecified() {
		return c, fmt.Errorf("gossip config: bind address %s: bind to a specific address", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		return c, fmt.Errorf("gossip config: bind port %d out of range", c.BindPort)
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = c.BindAddr
	}
	if adv, err := netip.ParseAddr(c.AdvertiseAddr); err != nil || adv.IsUnspecified() {
		return c, fmt.Errorf("gossip config: advertise address %q is not a specific IP", c.AdvertiseAddr)
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		return c, fmt.Errorf("gossip config: advertise port %d out of range", c.AdvertisePort)
	}
	if err := validateKeys(c.Keys); err != nil {
		return c, fmt.Errorf("gossip config: %w", err)
	}
	if c.Label == "" {
		return c, errors.New("gossip config: label is required")
	}
	if len(c.Label) > memberlist.LabelMaxSize {
		return c, fmt.Errorf("gossip config: label longer than %d bytes", memberlist.LabelMaxSize)
	}
	for _, s := range c.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return c, fmt.Errorf("gossip config: seed %q: %w", s, err)
		}
	}
	c.Keys = copyKeys(c.Keys)
	c.Seeds = append([]string(nil), c.Seeds...)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}

	lan := memberlist.DefaultLANConfig()
	setDur(&c.ProbeInterval, lan.ProbeInterval)
	setDur(&c.ProbeTimeout, lan.ProbeTimeout)
	setDur(&c.GossipInterval, lan.GossipInterval)
	setDur(&c.PushPullInterval, lan.PushPullInterval)
	setDur(&c.TCPTimeout, lan.TCPTimeout)
	setDur(&c.GossipToTheDeadTime, lan.GossipToTheDeadTime)
	setDur(&c.DeadNodeReclaimTime, DefaultDeadNodeReclaimTime)
	if c.SuspicionMult <= 0 {
		c.SuspicionMult = lan.SuspicionMult
	}
	if c.RetransmitMult <= 0 {
		c.RetransmitMult = lan.RetransmitMult
	}
	setDur(&c.RejoinInterval, DefaultRejoinInterval)
	setDur(&c.JoinBackoffMin, DefaultJoinBackoffMin)
	setDur(&c.JoinBackoffMax, DefaultJoinBackoffMax)
	if c.JoinBackoffMax < c.JoinBackoffMin {
		c.JoinBackoffMax = c.JoinBackoffMin
	}
	setDur(&c.CacheWriteInterval, DefaultCacheWriteInterval)
	setDur(&c.WatchInterval, DefaultWatchInterval)
	return c, nil
}

// memberlistConfig builds memberlist's configuration: encrypted, verified,
// labelled, on the given transport and bound port.
func (c Config) memberlistConfig(port int) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.NodeName
	mc.BindAddr = c.BindAddr
	mc.BindPort = port
	mc.AdvertiseAddr = c.AdvertiseAddr
	mc.AdvertisePort = c.AdvertisePort
	if mc.AdvertisePort == 0 {
		mc.AdvertisePort = port
	}
	mc.Label = c.Label
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	mc.ProbeInterval = c.ProbeInterval
	mc.ProbeTimeout = c.ProbeTimeout
	mc.GossipInterval = c.GossipInterval
	mc.PushPullInterval = c.PushPullInterval
	mc.TCPTimeout = c.TCPTimeout
	mc.SuspicionMult = c.SuspicionMult
	mc.RetransmitMult = c.RetransmitMult
	mc.GossipToTheDeadTime = c.GossipToTheDeadTime
	mc.DeadNodeReclaimTime = c.DeadNodeReclaimTime
	mc.EnableCompression = c.Compress
	return mc
}

func setDur(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func validateKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("at least one cluster key is required (gossip is never unencrypted)")
	}
	for i, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("cluster key %d: %w", i+1, err)
		}
	}
	return nil
}

func copyKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = append([]byte(nil), k...)
	}
	return out
}
