// Package node is the segmesh daemon: it composes the WireGuard mesh, gossip
// membership and (later) the ACL, keeps them in step, and serves the control
// API. The CLI builds a Node with New and runs it; nothing here exits the
// process.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/segmesh/segmesh/acl"
	"github.com/segmesh/segmesh/acl/nft"
	"github.com/segmesh/segmesh/config"
	"github.com/segmesh/segmesh/flows"
	"github.com/segmesh/segmesh/gossip"
	"github.com/segmesh/segmesh/mesh"
	"github.com/segmesh/segmesh/metrics"
	"github.com/segmesh/segmesh/quarantine"
)

// GossipLabel is the memberlist label: gossip from other meshes is refused.
const GossipLabel = "segmesh"

// leaveTimeout bounds the graceful leave on shutdown.
const leaveTimeout = 5 * time.Second

// Node is a running segmesh daemon.
type Node struct {
	log      *slog.Logger
	deps     Deps
	version  string
	key      mesh.Key // private
	pub      mesh.Key
	endpoint netip.AddrPort // advertise address + listen port
	runStart time.Time

	fw     Firewall
	mesh   Mesh
	gossip Gossip
	ctl    *controlServer

	mu    sync.Mutex // guards everything below
	cfg   *config.Config
	claim claim
	book  addrBook // address memory (addrbook.go)
	// selfRemembered: at start the memory held this node's persisted claim
	// (within address_retention), so its claim time counts again.
	selfRemembered bool
	view           view
	track          tracker
	ready          bool
	policy         policyState
	trust          *trustState            // CA mode; nil: trust open
	peerIPs        map[netip.Addr]string  // overlay addresses of the WireGuard peers at the last successful apply, with their keys (sync loop)
	bootHolders    map[netip.Addr]string  // the address book's holders when this run started, with their IPv6 (sync loop; see enforceIngress)
	applied        compileInputs          // inputs of the last successful apply (sync loop)
	ids            *acl.IdentityAllocator // identity numbers of the compiled sets (with mu; see identities)
	egressIDs      *acl.IdentityAllocator // destination identity numbers of egress (with mu)
	appliedEgress  egressInputs           // inputs of the last successful egress apply (sync loop)
	cg             *cgroupFollow          // the workloads' cgroups; nil without workloads (with mu)
	senders        senderFinder           // bounds the process lookups of egress denials
	netnsWarned    map[string]bool        // workloads warned about a foreign network namespace (with mu)
	indexed        compileInputs          // inputs byAddr was built from
	records        verifyCache            // verified records of the members (sync.go)

	syncNow chan struct{}      // cap 1: ask the loop for an immediate sync
	syncReq chan chan struct{} // a sync whose completion the caller awaits
	stopped chan struct{}      // closed when Run returns
	changed *notifier          // fires after every sync and policy change (stream)

	recorder      *metrics.Recorder
	denyTotals    metrics.DenyTotals
	egressTotals  map[string]*metrics.DenyTotals // per local identity ("" the node's), with mu
	flowConns     map[metrics.FlowKind]uint64    // segmesh_flows_total, with mu
	stopMetrics   func() error
	policyPending time.Time // when a newly accepted policy awaits enforcement (apply duration)
	// rejectedDoc is the hash of the last policy document from the mesh
	// that did not decode: push/pull brings it back every interval, and
	// only its first arrival is worth a warning.
	rejectedDoc string

	flows *flowPipeline
	quar  *quarantine.List // the fleet's quarantine entries (safe for concurrent use)
	// appliedQuar is the quarantine in force since the last successful
	// apply (quarApplied); the sync loop owns both.
	appliedQuar nft.Quarantine
	quarApplied bool
	peerAPI     *peerAPI                  // the peer API and the fleet client; nil when peer_api_port is 0
	byAddr      map[netip.Addr]flows.Peer // admitted peers by overlay address (guarded by mu)
	rates       rates                     // per-peer byte rates (guarded by mu)
	removals    map[string]bool           // operator removals already applied (guarded by mu)
	mtu         autoMTU                   // mtu auto (mtu.go); touched only by the sync loop
	wake        *time.Timer               // syncs when the next keepalive is due; touched only by the sync loop
}

// New builds the node: it loads the key, claims an address, creates the
// WireGuard interface, opens gossip and the control socket. On error nothing
// is left behind.
func New(cfg *config.Config, log *slog.Logger, deps Deps, version string) (n *Node, err error) {
	key, err := mesh.LoadPrivateKey(cfg.PrivateKeyFile)
	if err != nil {
		return nil, &config.Error{File: cfg.File, Key: "private_key_file", Err: err}
	}
	clusterKeys, err := config.ReadClusterKeys(cfg.Gossip.SecretFile)
	if err != nil {
		return nil, &config.Error{File: cfg.File, Key: "gossip.secret_file", Err: err}
	}
	advertise, err := advertiseAddr(cfg)
	if err != nil {
		return nil, &config.Error{File: cfg.File, Key: "gossip.advertise", Err: err}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	n = &Node{
		log: log, deps: deps, version: version, key: key, pub: key.PublicKey(),
		endpoint: netip.AddrPortFrom(advertise, uint16(cfg.ListenPort)),
		runStart: deps.Now(), cfg: cfg, track: newTracker(),
		syncNow: make(chan struct{}, 1), syncReq: make(chan chan struct{}), stopped: make(chan struct{}), changed: newNotifier(), rates: newRates(), removals: map[string]bool{},
		peerIPs: map[netip.Addr]string{}, records: newVerifyCache(),
	}
	if n.trust, err = loadTrust(cfg, n.pub, n.runStart); err != nil {
		return nil, err
	}
	n.adoptCertIdentity()
	if err := n.loadQuarantine(); err != nil {
		return nil, err
	}
	n.book = newAddrBook(cfg.AddressRetention)
	if err := n.book.load(cfg.StateDir, cfg.Network); err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	if n.claim, err = loadClaim(cfg.StateDir, cfg.Network, n.pub, n.runStart); err != nil {
		return nil, err
	}
	n.bootHolders = map[netip.Addr]string{}
	for a, h := range n.book.local {
		if h.live(n.runStart, n.book.retention) && h.key != n.pub {
			n.bootHolders[a] = h.key.String()
			n.bootHolders[mesh.Address6(cfg.Network6, h.key)] = h.key.String()
		}
	}
	n.selfRemembered = n.book.remembers(n.claim.Address, n.pub, n.runStart)
	if held := n.book.heldByOthers(n.pub, n.runStart); held[n.claim.Address] && !n.selfRemembered {
		// Choose around the holders this node remembers.
		if a, ok := nextFree(cfg.Network, n.pub, held); ok {
			n.claim = claim{Network: cfg.Network, Address: a, Claimed: n.runStart}
		}
	}
	if fixed := n.fixedAddress(); fixed.IsValid() {
		if !cfg.Network.Contains(fixed) {
			return nil, &config.Error{File: cfg.File, Key: "trust.cert_file", Err: fmt.Errorf("the certificate fixes %v, outside network %v", fixed, cfg.Network)}
		}
		n.claim = claim{Network: cfg.Network, Address: fixed, Claimed: n.runStart}
	}
	if err := n.claim.save(cfg.StateDir); err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", cfg.StateDir, err)
	}
	var cleanup []func() error
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				_ = cleanup[i]()
			}
		}
	}()
	if n.policy, err = loadPolicy(cfg.StateDir); err != nil {
		return nil, err
	}
	if err := n.proposePolicyFile(cfg.PolicyFile, false); err != nil {
		return nil, &config.Error{File: cfg.File, Key: "policy_file", Err: err}
	}
	// Security invariant 2: the fail-closed table, with the persisted policy
	// compiled for no peers, is in place before the interface exists.
	if n.fw, err = deps.NewFirewall(nft.Config{Interface: cfg.Interface, Network4: cfg.Network, Network6: cfg.Network6}, log.With("sub", "acl")); err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	cleanup = append(cleanup, n.fw.Close, n.fw.Remove)
	if err = n.fw.Install(); err != nil {
		return nil, fmt.Errorf("nftables: install table: %w", err)
	}
	if err = n.fw.Apply(n.desired(nil)); err != nil {
		return nil, fmt.Errorf("nftables: enforce persisted policy: %w", err)
	}
	// The quarantine holds from the first packet: the persisted entries,
	// with the addresses the address book and the keys give.
	if err = n.enforceQuarantine(nil); err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	if err = n.followCgroups(cfg.Workloads, cfg.File); err != nil {
		return nil, err
	}
	cleanup = append(cleanup, n.closeCgroups)
	if err = n.fw.ApplyEgress(n.desiredEgress(egressInputs{in: n.compileInputs(nil), cgroups: n.cgroupStatuses()})); err != nil {
		return nil, fmt.Errorf("nftables: enforce egress: %w", err)
	}
	if n.flows, err = n.openFlows(); err != nil {
		return nil, &config.Error{File: cfg.File, Key: "flow_log", Err: err}
	}
	cleanup = append(cleanup, n.flows.stop)
	if n.mesh, err = deps.OpenMesh(n.meshConfig(advertise), log.With("sub", "mesh")); err != nil {
		return nil, fmt.Errorf("wireguard interface %s: %w", cfg.Interface, err)
	}
	cleanup = append(cleanup, n.mesh.Close)
	if err = n.mesh.Up(); err != nil {
		return nil, fmt.Errorf("bring up %s: %w", cfg.Interface, err)
	}
	if n.gossip, err = deps.NewGossip(n.gossipConfig(advertise, clusterKeys), n.record()); err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	cleanup = append(cleanup, n.gossip.Shutdown)
	if err = n.startMetrics(); err != nil {
		return nil, &config.Error{File: cfg.File, Key: "metrics_listen", Err: err}
	}
	cleanup = append(cleanup, n.stopMetricsNow)
	if err = n.startPeerAPI(); err != nil {
		return nil, &config.Error{File: cfg.File, Key: "peer_api_port", Err: err}
	}
	cleanup = append(cleanup, n.stopPeerAPI)
	if n.ctl, err = listenControl(cfg.ControlSocket, cfg.ControlGroup, n, log.With("sub", "control")); err != nil {
		return nil, err
	}
	log.Info("node ready", "name", cfg.Name, "public_key", n.pub.String(), "address", n.claim.Address,
		"address6", mesh.Address6(cfg.Network6, n.pub), "interface", cfg.Interface, "backend", n.mesh.Backend(),
		"endpoint", n.endpoint)
	if len(cfg.Workloads) > 0 {
		log.Info("workloads configured", "workloads", workloadNames(cfg.Workloads))
	}
	return n, nil
}

// Run gossips and keeps WireGuard in step with membership until ctx is done,
// then leaves the mesh gracefully and tears everything down.
func (n *Node) Run(ctx context.Context) error {
	defer close(n.stopped)
	defer n.stopWake()
	n.gossip.Start()
	n.flows.start(n)
	n.ctl.serve()
	releaserStop, releaserDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(releaserDone)
		runHeapReleaser(releaserStop, idleHeapCheck, idleHeapThreshold, idleGarbageThreshold)
	}()
	defer func() { close(releaserStop); <-releaserDone }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	observe := time.NewTicker(observeInterval)
	defer observe.Stop()
	// Gossip changes come in bursts (joins, a restarted fleet): they are
	// folded into at most one sync per gossipSyncGap.
	coalesced := time.NewTimer(time.Hour)
	coalesced.Stop()
	defer coalesced.Stop()
	waiting := false // coalesced is armed
	n.sync()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return n.shutdown()
		case <-n.gossip.Changes():
			if wait := gossipSyncGap - time.Since(last); wait > 0 {
				if !waiting {
					coalesced.Reset(wait)
					waiting = true
				}
				continue
			}
		case <-coalesced.C:
		case <-n.syncNow:
		case <-tick.C:
		case <-observe.C:
			if _, _, err := n.observeDenied(); err != nil {
				n.log.Warn("denied-packet counters", "err", err)
			}
			continue
		case done := <-n.syncReq:
			n.sync()
			close(done)
			last, waiting = time.Now(), false
			coalesced.Stop()
			continue
		}
		n.sync()
		// This sync saw every change so far: a pending coalesced one is moot.
		last, waiting = time.Now(), false
		coalesced.Stop()
	}
}

// gossipSyncGap is the shortest time between syncs that gossip changes
// trigger; other triggers (policy, revocation, removal, reload, keepalive
// due, the 1 s tick) sync at once. It bounds the sync work of a join burst
// and adds at most this much to a membership change's propagation.
const gossipSyncGap = 100 * time.Millisecond

// shutdown leaves gracefully: others drop this node at once.
func (n *Node) shutdown() error {
	n.log.Info("leaving the mesh")
	if err := n.gossip.Leave(leaveTimeout); err != nil {
		// Peers that miss the leave still see this node fail and drop it.
		n.log.Warn("graceful leave not confirmed", "err", err)
	}
	return errors.Join(n.gossip.Shutdown(), n.ctl.close(), n.stopPeerAPI(), n.stopMetricsNow(), n.flows.stop(), n.closeCgroups(), n.mesh.Close(), n.fw.Remove(), n.fw.Close())
}

func (n *Node) stopMetricsNow() error {
	if n.stopMetrics == nil {
		return nil
	}
	return n.stopMetrics()
}

// kick asks the loop for a sync without waiting.
func (n *Node) kick() {
	select {
	case n.syncNow <- struct{}{}:
	default:
	}
}

// syncAndWait returns after a full sync ran on the loop.
func (n *Node) syncAndWait() {
	done := make(chan struct{})
	select {
	case n.syncReq <- done:
		<-done
	case <-n.stopped:
	}
}

func (n *Node) meshConfig(advertise netip.Addr) mesh.Config {
	mtu := n.cfg.MTU
	if mtu == 0 {
		mtu = n.startMTU(advertise) // mtu auto: follows the paths to the peers from then on (mtu.go)
	}
	return mesh.Config{
		Interface: n.cfg.Interface, PrivateKey: n.key, ListenPort: n.cfg.ListenPort, MTU: mtu,
		Address4: netip.PrefixFrom(n.claim.Address, n.cfg.Network.Bits()),
		Address6: netip.PrefixFrom(mesh.Address6(n.cfg.Network6, n.pub), n.cfg.Network6.Bits()),
	}
}

func (n *Node) gossipConfig(advertise netip.Addr, keys [][]byte) gossip.Config {
	bind := net.JoinHostPort(advertise.String(), strconv.Itoa(config.DefaultGossipPort))
	if n.cfg.Gossip.Bind != "" {
		bind, _ = config.SplitHostPortDefault(n.cfg.Gossip.Bind, config.DefaultGossipPort)
	}
	host, portStr, _ := net.SplitHostPort(bind)
	port, _ := strconv.Atoi(portStr)
	return gossip.Config{
		NodeName: n.pub.String(), BindAddr: host, BindPort: port,
		AdvertiseAddr: advertise.String(), AdvertisePort: port,
		Keys: keys, Label: GossipLabel, Seeds: n.cfg.Gossip.Join,
		CachePath: n.cfg.StateDir + "/peers.json", Logger: n.log.With("sub", "gossip"),
		Documents: docHandler{n},
	}
}

// record is this node's announcement. Callers hold mu or own n exclusively.
func (n *Node) record() gossip.Record {
	r := gossip.Record{
		Format: gossip.RecordFormat, Name: n.cfg.Name, PublicKey: n.pub.String(),
		ListenPort: n.cfg.ListenPort, Address4: n.claim.Address, Claimed: n.claim.Claimed.UnixNano(),
		Address6: mesh.Address6(n.cfg.Network6, n.pub), Tags: n.cfg.Tags,
		Workloads: recordWorkloads(n.cfg.Workloads),
	}
	if n.trust != nil {
		// The certificate carries name and tags; receivers take them from it.
		r.Tags = nil
		if b, err := n.trust.cert.Marshal(); err == nil {
			r.Cert = b
		}
	}
	return r
}

// adoptCertIdentity makes the certificate's name and tags this node's (CA
// mode), warning when the config disagrees. Callers hold mu or own n.
func (n *Node) adoptCertIdentity() {
	if n.trust == nil {
		return
	}
	c := n.trust.cert
	if n.cfg.Name != c.Name || !maps.Equal(n.cfg.Tags, c.Tags) {
		n.log.Warn("CA mode: the certificate's name and tags replace the config's",
			"config_name", n.cfg.Name, "config_tags", n.cfg.Tags, "cert_name", c.Name, "cert_tags", c.Tags)
	}
	cfg := *n.cfg
	cfg.Name, cfg.Tags = c.Name, maps.Clone(c.Tags)
	n.cfg = &cfg
}

// fixedAddress is the IPv4 address the certificate fixes, if any.
func (n *Node) fixedAddress() netip.Addr {
	if n.trust == nil {
		return netip.Addr{}
	}
	return n.trust.cert.Address4
}

// advertiseAddr is gossip.advertise, or the first global unicast address of
// an up, non-loopback interface (IPv4 preferred).
func advertiseAddr(cfg *config.Config) (netip.Addr, error) {
	if cfg.Gossip.Advertise != "" {
		return netip.ParseAddr(cfg.Gossip.Advertise)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("detect: %w", err)
	}
	var v6 netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || ifc.Name == cfg.Interface {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil || !p.Addr().IsGlobalUnicast() || cfg.Network.Contains(p.Addr()) || cfg.Network6.Contains(p.Addr()) {
				continue
			}
			if p.Addr().Is4() {
				return p.Addr(), nil
			}
			if !v6.IsValid() {
				v6 = p.Addr()
			}
		}
	}
	if v6.IsValid() {
		return v6, nil
	}
	return netip.Addr{}, errors.New("no address to advertise found; set gossip.advertise")
}
