package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Status is the `segmesh status --json` contract (DESIGN.md). Unknown
// fields are ignored: the contract is a minimum.
type Status struct {
	Self   StatusSelf   `json:"self"`
	Peers  []StatusPeer `json:"peers"`
	Policy StatusPolicy `json:"policy"`
	Trust  string       `json:"trust"`
	// Quarantined lists the nodes in quarantine.
	Quarantined []StatusQuarantined `json:"quarantined"`
}

// StatusQuarantined is one node in quarantine.
type StatusQuarantined struct {
	Node      string   `json:"node"`
	PublicKey string   `json:"public_key"`
	Since     string   `json:"since"`
	Reason    string   `json:"reason"`
	AllowFrom []string `json:"allow_from"`
	Self      bool     `json:"self"`
}

// StatusSelf describes the local node.
type StatusSelf struct {
	Name      string            `json:"name"`
	PublicKey string            `json:"public_key"`
	Address   string            `json:"address"`
	Address6  string            `json:"address6"`
	Endpoint  string            `json:"endpoint"`
	Tags      map[string]string `json:"tags"`
	Segments  []string          `json:"segments"`
}

// Peer states of the contract.
const (
	StateUp        = "up"
	StateSuspect   = "suspect"
	StateDead      = "dead"
	StateLeft      = "left"
	StateUntrusted = "untrusted"
	// StateQuarantined: a live peer in quarantine.
	StateQuarantined = "quarantined"
)

// StatusPeer is one peer as the local node sees it.
type StatusPeer struct {
	Name          string            `json:"name"`
	PublicKey     string            `json:"public_key"`
	Address       string            `json:"address"`
	Address6      string            `json:"address6"`
	Endpoint      string            `json:"endpoint"`
	Tags          map[string]string `json:"tags"`
	Segments      []string          `json:"segments"`
	State         string            `json:"state"`
	Reason        string            `json:"reason"`
	LastHandshake *time.Time        `json:"last_handshake"`
	RxBytes       int64             `json:"rx_bytes"`
	TxBytes       int64             `json:"tx_bytes"`
}

// StatusPolicy is the active policy summary.
type StatusPolicy struct {
	Version int64  `json:"version"`
	Hash    string `json:"hash"`
	Mode    string `json:"mode"`
}

// Peer returns the peer with the given public key.
func (s *Status) Peer(publicKey string) (StatusPeer, bool) {
	for _, p := range s.Peers {
		if p.PublicKey == publicKey {
			return p, true
		}
	}
	return StatusPeer{}, false
}

// Status runs `segmesh status --json --socket Socket` from the host and
// decodes it. When the node's process has exited the error says so.
func (n *Node) Status() (*Status, error) {
	out, err := n.StatusOutput("--json")
	if err != nil {
		return nil, err
	}
	var s Status
	if err := json.Unmarshal(out, &s); err != nil {
		return nil, fmt.Errorf("node %s: decode status --json: %w: %s", n.Name, err, out)
	}
	return &s, nil
}

// StatusOutput runs `segmesh status --socket Socket` with extra args (e.g.
// "--json") and returns its stdout.
func (n *Node) StatusOutput(extra ...string) ([]byte, error) {
	if exitErr := n.ExitError(); exitErr != nil {
		return nil, exitErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append([]string{"status", "--socket", n.Socket}, extra...)
	cmd := exec.CommandContext(ctx, n.c.cfg.Binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("node %s: segmesh %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
