package harness

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Underlay addressing: every node gets FirstHost + its index in Subnet.
var (
	Subnet    = netip.MustParsePrefix("192.0.2.0/24")
	FirstHost = 10
)

// GossipPort is segmesh's default gossip port (bind = advertise address).
const GossipPort = 7946

// Config configures a Cluster.
type Config struct {
	// Binary is the segmesh binary; required for daemon nodes.
	Binary string
	// Prefix starts every namespace (Prefix-ul, Prefix-<node>) and, unless a
	// node fixes its own, every WireGuard interface name (Prefix+"w"+index).
	// Empty: "sm" plus a random run id.
	Prefix string
	// BaseDir holds one directory per node. Empty: a new temporary directory
	// that Close removes. A given BaseDir is created if needed; Close removes
	// only the node directories in it.
	BaseDir string
	// DeadPeerGrace is written to every node's dead_peer_grace (default 5s).
	DeadPeerGrace time.Duration
	// LogLevel is written to every node's log_level (default debug).
	LogLevel string
	// Policy, when not empty, is written to every node's DIR/policy.yaml and
	// set as its policy_file (e.g. an allow-all policy once a node without a
	// policy fails closed).
	Policy string
	// Detach starts daemons in their own session (setsid) without a parent
	// death signal and writes DIR/segmesh.pid, so they outlive the caller.
	Detach bool
	// Logf receives progress lines (namespaces created, processes started).
	// Nil discards them.
	Logf func(format string, args ...any)
}

// Cluster is a set of nodes in network namespaces on one underlay bridge.
// Its methods may be called from several goroutines.
type Cluster struct {
	cfg       Config
	underlay  string
	ownsBase  bool
	mu        sync.Mutex
	nodes     []*Node
	extraNS   []string // namespaces made by AddNamespace
	nextIndex int
	closed    bool
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// New creates the underlay namespace and its bridge.
func New(cfg Config) (*Cluster, error) {
	if cfg.Prefix == "" {
		id, err := randomID(3)
		if err != nil {
			return nil, err
		}
		cfg.Prefix = "sm" + id
	}
	if !nameRE.MatchString(cfg.Prefix) {
		return nil, fmt.Errorf("bad prefix %q", cfg.Prefix)
	}
	if cfg.DeadPeerGrace == 0 {
		cfg.DeadPeerGrace = 5 * time.Second
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "debug"
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	c := &Cluster{cfg: cfg, underlay: cfg.Prefix + "-ul"}
	if cfg.BaseDir == "" {
		dir, err := os.MkdirTemp("", "segmesh-"+cfg.Prefix+"-")
		if err != nil {
			return nil, fmt.Errorf("create base dir: %w", err)
		}
		c.cfg.BaseDir = dir
		c.ownsBase = true
	} else if err := os.MkdirAll(cfg.BaseDir, 0o755); err != nil {
		return nil, fmt.Errorf("create base dir: %w", err)
	}
	steps := [][]string{
		{"netns", "add", c.underlay},
		{"-n", c.underlay, "link", "set", "lo", "up"},
		{"-n", c.underlay, "link", "add", "br0", "type", "bridge"},
		{"-n", c.underlay, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			cerr := c.Close()
			return nil, errors.Join(fmt.Errorf("create underlay: %w", err), cerr)
		}
	}
	c.cfg.Logf("harness: created underlay namespace %s (bridge br0, %s), base dir %s", c.underlay, Subnet, c.cfg.BaseDir)
	return c, nil
}

// Prefix is the cluster's name prefix (run id).
func (c *Cluster) Prefix() string { return c.cfg.Prefix }

// Underlay is the name of the underlay namespace.
func (c *Cluster) Underlay() string { return c.underlay }

// BaseDir is the directory holding the node directories.
func (c *Cluster) BaseDir() string { return c.cfg.BaseDir }

// Nodes returns the nodes in creation order.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// NodeSpec describes a node to add.
type NodeSpec struct {
	Name      string            // node name; also names its namespace (Prefix-Name)
	Tags      map[string]string // init --tags
	Join      []string          // init --join (host:port); see Node.GossipAddr
	Interface string            // WireGuard interface; default Prefix+"w"+index
	// Set overrides config keys after init (nested maps are merged), e.g.
	// {"gossip": {"join": []string{...}}} or {"dead_peer_grace": "1s"}.
	Set map[string]any
	// Bare creates only the namespace, address and directory: no init and no
	// config, for running other programs with StartCommand.
	Bare bool
	// HostSys starts the node's processes with nsenter --net instead of ip
	// netns exec, which remounts /sys (and with it the cgroup mounts) for
	// the namespace: for nodes whose daemon follows workloads' cgroups.
	HostSys bool
}

// AddNode creates the node's namespace, veth into the bridge, address and
// directory, and (unless Bare) runs `segmesh init` and edits the config.
func (c *Cluster) AddNode(spec NodeSpec) (*Node, error) {
	if !nameRE.MatchString(spec.Name) || spec.Name == "ul" {
		return nil, fmt.Errorf("bad node name %q", spec.Name)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("cluster closed")
	}
	for _, o := range c.nodes {
		if o.Name == spec.Name {
			c.mu.Unlock()
			return nil, fmt.Errorf("node %q exists", spec.Name)
		}
	}
	idx := c.nextIndex
	c.nextIndex++
	c.mu.Unlock()

	host := FirstHost + idx
	if host > 254 {
		return nil, errors.New("too many nodes")
	}
	a4 := Subnet.Addr().As4()
	a4[3] = byte(host)
	ifname := spec.Interface
	if ifname == "" {
		ifname = fmt.Sprintf("%sw%d", c.cfg.Prefix, idx)
	}
	if len(ifname) > 15 {
		return nil, fmt.Errorf("interface name %q longer than 15 characters", ifname)
	}
	n := &Node{
		c:         c,
		Name:      spec.Name,
		Index:     idx,
		Namespace: c.cfg.Prefix + "-" + spec.Name,
		Addr:      netip.AddrFrom4(a4),
		Interface: ifname,
		Dir:       filepath.Join(c.cfg.BaseDir, spec.Name),
		Bare:      spec.Bare,
		HostSys:   spec.HostSys,
		veth:      fmt.Sprintf("v%d", idx),
	}
	n.ConfigPath = filepath.Join(n.Dir, "segmesh.yaml")
	n.Socket = filepath.Join(n.Dir, "segmesh.sock")
	n.LogPath = filepath.Join(n.Dir, "log")

	// Registered before anything is created so Close removes partial work.
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()

	if err := os.RemoveAll(n.Dir); err != nil {
		return nil, fmt.Errorf("node %s: clear dir: %w", n.Name, err)
	}
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("node %s: create dir: %w", n.Name, err)
	}
	if err := c.createNetns(n); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	c.cfg.Logf("harness: created namespace %s for node %s: eth0 %s, wireguard interface %s, dir %s",
		n.Namespace, n.Name, n.Addr, n.Interface, n.Dir)
	if spec.Bare {
		return n, nil
	}
	if err := c.initNode(n, spec); err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return n, nil
}

func (c *Cluster) createNetns(n *Node) error {
	steps := [][]string{
		{"netns", "add", n.Namespace},
		{"-n", n.Namespace, "link", "set", "lo", "up"},
		{"-n", c.underlay, "link", "add", n.veth, "type", "veth", "peer", "name", "eth0", "netns", n.Namespace},
		{"-n", c.underlay, "link", "set", n.veth, "master", "br0"},
		{"-n", c.underlay, "link", "set", n.veth, "up"},
		{"-n", n.Namespace, "addr", "add", netip.PrefixFrom(n.Addr, Subnet.Bits()).String(), "dev", "eth0"},
		{"-n", n.Namespace, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return fmt.Errorf("create namespace: %w", err)
		}
	}
	return nil
}

// AddNamespace creates an extra network namespace Prefix-name with only
// loopback up (e.g. a container behind a node) and returns its name. Close
// deletes it with the others.
func (c *Cluster) AddNamespace(name string) (string, error) {
	if !nameRE.MatchString(name) || name == "ul" {
		return "", fmt.Errorf("bad namespace name %q", name)
	}
	ns := c.cfg.Prefix + "-" + name
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return "", errors.New("cluster closed")
	}
	for _, n := range c.nodes {
		if n.Namespace == ns {
			c.mu.Unlock()
			return "", fmt.Errorf("namespace %s is node %s's", ns, n.Name)
		}
	}
	for _, o := range c.extraNS {
		if o == ns {
			c.mu.Unlock()
			return "", fmt.Errorf("namespace %s exists", ns)
		}
	}
	c.extraNS = append(c.extraNS, ns) // registered first so Close removes partial work
	c.mu.Unlock()
	if err := ip("netns", "add", ns); err != nil {
		return "", err
	}
	if err := ip("-n", ns, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	c.cfg.Logf("harness: created namespace %s", ns)
	return ns, nil
}

// clusterKeySource returns the cluster.key of the first daemon node that has
// one, other than n.
func (c *Cluster) clusterKeySource(n *Node) string {
	for _, o := range c.Nodes() {
		if o == n || o.Bare {
			continue
		}
		p := filepath.Join(o.Dir, "cluster.key")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func (c *Cluster) initNode(n *Node, spec NodeSpec) error {
	if c.cfg.Binary == "" {
		return errors.New("no segmesh binary configured")
	}
	if src := c.clusterKeySource(n); src != "" {
		key, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("read cluster key: %w", err)
		}
		if err := os.WriteFile(n.ClusterKeyPath(), key, 0o600); err != nil {
			return fmt.Errorf("copy cluster key: %w", err)
		}
	}
	args := []string{"init", "--dir", n.Dir, "--name", n.Name,
		"--advertise", n.Addr.String(), "--interface", n.Interface}
	if len(spec.Tags) > 0 {
		args = append(args, "--tags", formatTags(spec.Tags))
	}
	if len(spec.Join) > 0 {
		args = append(args, "--join", strings.Join(spec.Join, ","))
	}
	if _, err := run(c.cfg.Binary, args...); err != nil {
		return fmt.Errorf("segmesh init: %w", err)
	}
	set := map[string]any{
		"state_dir":       filepath.Join(n.Dir, "state"),
		"control_socket":  n.Socket,
		"metrics_listen":  "",
		"dead_peer_grace": c.cfg.DeadPeerGrace.String(),
		"log_level":       c.cfg.LogLevel,
	}
	if c.cfg.Policy != "" {
		pf := filepath.Join(n.Dir, "policy.yaml")
		if err := os.WriteFile(pf, []byte(c.cfg.Policy), 0o644); err != nil {
			return fmt.Errorf("write policy file: %w", err)
		}
		set["policy_file"] = pf
	}
	mergeMaps(set, spec.Set)
	if err := EditConfig(n.ConfigPath, set); err != nil {
		return err
	}
	return nil
}

// formatTags renders tags as k=v,k=v sorted by key.
func formatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+tags[k])
	}
	return strings.Join(parts, ",")
}

// Close kills every process, deletes every namespace, removes the
// WireGuard sockets and the node directories (and the base directory when
// the cluster created it). It is safe to call more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	c.closed = true
	nodes := append([]*Node(nil), c.nodes...)
	extra := append([]string(nil), c.extraNS...)
	c.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		if err := n.Kill(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range nodes {
		if err := DeleteNetns(n.Namespace); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range extra {
		if err := DeleteNetns(ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := DeleteNetns(c.underlay); err != nil {
		errs = append(errs, err)
	}
	for _, n := range nodes {
		if err := RemoveWireGuardSocket(n.Interface); err != nil {
			errs = append(errs, err)
		}
	}
	if c.ownsBase {
		if err := os.RemoveAll(c.cfg.BaseDir); err != nil {
			errs = append(errs, err)
		}
	} else {
		for _, n := range nodes {
			if err := os.RemoveAll(n.Dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
