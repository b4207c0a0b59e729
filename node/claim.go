package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/segmesh/segmesh/mesh"
)

const claimFile = "address.json"

// claim is this node's IPv4 address claim, persisted so that a restarted
// node keeps its address.
type claim struct {
	Network netip.Prefix `json:"network"`
	Address netip.Addr   `json:"address"`
	Claimed time.Time    `json:"claimed"`
}

// loadClaim returns the persisted claim when it is still valid for key and
// network; otherwise a fresh claim of candidate 0.
func loadClaim(stateDir string, network netip.Prefix, key mesh.Key, now time.Time) (claim, error) {
	fresh := claim{Network: network, Address: mesh.Candidate4(network, key, 0), Claimed: now}
	b, err := os.ReadFile(filepath.Join(stateDir, claimFile))
	if errors.Is(err, fs.ErrNotExist) {
		return fresh, nil
	}
	if err != nil {
		return claim{}, fmt.Errorf("read address claim: %w", err)
	}
	var c claim
	if err := json.Unmarshal(b, &c); err != nil || c.Network != network || mesh.CandidateIndex(network, key, c.Address) < 0 {
		return fresh, nil // corrupt, or another key/network: start over
	}
	return c, nil
}

// save persists the claim atomically.
func (c claim) save(stateDir string) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode address claim: %w", err)
	}
	return writeFileAtomic(filepath.Join(stateDir, claimFile), b, 0o600)
}

// writeFileAtomic writes data to a temporary file and renames it over path,
// so a crash leaves either the old or the new content.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

// claimant is one holder of an IPv4 address in the clash rule.
type claimant struct {
	key       mesh.Key
	effective time.Time // claim time as this node judges it
}

// wins reports whether a keeps the address against b: the earlier claim
// keeps it; ties go to the lower key.
func (a claimant) wins(b claimant) bool {
	if !a.effective.Equal(b.effective) {
		return a.effective.Before(b.effective)
	}
	for i := range a.key {
		if a.key[i] != b.key[i] {
			return a.key[i] < b.key[i]
		}
	}
	return false
}

// nextFree returns this key's first candidate not in held, starting at 0.
func nextFree(network netip.Prefix, key mesh.Key, held map[netip.Addr]bool) (netip.Addr, bool) {
	for i := 0; i < mesh.MaxCandidates; i++ {
		a := mesh.Candidate4(network, key, i)
		if !held[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}
