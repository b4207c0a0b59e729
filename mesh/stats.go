package mesh

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Stats returns WireGuard's view of every configured peer, ordered by
// public key. LastHandshake is the zero time for a peer that never
// completed a handshake. Safe for concurrent use with Reconcile.
func (m *Mesh) Stats() ([]PeerStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	dev, err := m.wg.Device(m.name)
	if err != nil {
		return nil, fmt.Errorf("read wireguard device %s: %w", m.name, err)
	}
	return peerStats(dev.Peers), nil
}

func peerStats(peers []wgtypes.Peer) []PeerStats {
	out := make([]PeerStats, 0, len(peers))
	for i := range peers {
		out = append(out, statsOf(&peers[i]))
	}
	sortStats(out)
	return out
}

func statsOf(p *wgtypes.Peer) PeerStats {
	hs := p.LastHandshakeTime
	if hs.Equal(time.Unix(0, 0)) { // the kernel reports 0 for "never"
		hs = time.Time{}
	}
	return PeerStats{
		PublicKey:     p.PublicKey,
		Endpoint:      addrPortOf(p.Endpoint),
		LastHandshake: hs,
		RxBytes:       p.ReceiveBytes,
		TxBytes:       p.TransmitBytes,
	}
}

func sortStats(s []PeerStats) {
	slices.SortFunc(s, func(a, b PeerStats) int { return bytes.Compare(a.PublicKey[:], b.PublicKey[:]) })
}
