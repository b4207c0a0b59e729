package harness

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Exec runs a command inside the node's namespace and returns its combined
// output.
func (n *Node) Exec(argv ...string) ([]byte, error) {
	out, err := run("ip", append([]string{"netns", "exec", n.Namespace}, argv...)...)
	if err != nil {
		return out, fmt.Errorf("node %s: %w", n.Name, err)
	}
	return out, nil
}

// pingCommand is ping(8) when installed, else busybox's ping.
func pingCommand() []string {
	if _, err := exec.LookPath("ping"); err == nil {
		return []string{"ping"}
	}
	if _, err := exec.LookPath("busybox"); err == nil {
		return []string{"busybox", "ping"}
	}
	return []string{"ping"}
}

// Ping sends one echo request from the node's namespace to addr
// (`ping -c1 -W1 addr`) and fails unless a reply arrives within a second.
func (n *Node) Ping(addr string) error {
	argv := append(pingCommand(), "-c1", "-W1", addr)
	if _, err := n.Exec(argv...); err != nil {
		return fmt.Errorf("ping %s: %w", addr, err)
	}
	return nil
}

// WGPeer is one peer line of `wg show IF dump`.
type WGPeer struct {
	PublicKey        string
	Endpoint         string
	AllowedIPs       []string
	LatestHandshake  time.Time // zero: never
	RxBytes, TxBytes int64
}

// WGDevice is `wg show IF dump` parsed.
type WGDevice struct {
	PublicKey  string
	ListenPort int
	Peers      map[string]WGPeer // by public key
}

// WireGuard runs `wg show <Interface> dump` inside the node's namespace.
func (n *Node) WireGuard() (*WGDevice, error) { return n.WireGuardDevice(n.Interface) }

// WireGuardDevice runs `wg show <ifname> dump` inside the node's namespace
// (a WireGuard device the test started there beside the daemon's).
func (n *Node) WireGuardDevice(ifname string) (*WGDevice, error) {
	out, err := n.Exec("wg", "show", ifname, "dump")
	if err != nil {
		return nil, err
	}
	return parseWGDump(string(out))
}

func parseWGDump(s string) (*WGDevice, error) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return nil, fmt.Errorf("wg dump: empty output")
	}
	f := strings.Split(lines[0], "\t")
	if len(f) < 4 {
		return nil, fmt.Errorf("wg dump: bad interface line %q", lines[0])
	}
	port, _ := strconv.Atoi(f[2])
	d := &WGDevice{PublicKey: f[1], ListenPort: port, Peers: map[string]WGPeer{}}
	for _, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) < 8 {
			return nil, fmt.Errorf("wg dump: bad peer line %q", l)
		}
		p := WGPeer{PublicKey: f[0], Endpoint: f[2]}
		if f[3] != "(none)" && f[3] != "" {
			p.AllowedIPs = strings.Split(f[3], ",")
		}
		if sec, err := strconv.ParseInt(f[4], 10, 64); err == nil && sec > 0 {
			p.LatestHandshake = time.Unix(sec, 0)
		}
		p.RxBytes, _ = strconv.ParseInt(f[5], 10, 64)
		p.TxBytes, _ = strconv.ParseInt(f[6], 10, 64)
		d.Peers[p.PublicKey] = p
	}
	return d, nil
}
